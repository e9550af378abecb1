# ovdet serve in a container (CPU). Build:   docker build -t ovdet .
# Run (models from the host, an API key required off loopback):
#   docker run -p 8000:8000 -v "$PWD/runs:/models" -e OVDET_API_KEY=... ovdet \
#       serve --host 0.0.0.0 --model /models/vild --clip clip-b16
# A CUDA image: build FROM a pytorch/pytorch *-runtime image instead, drop the torch line, and
# run with --gpus all and --device cuda (see docs/serve.md).
FROM python:3.11-slim

ARG TORCH_VERSION=2.5.1
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/models/hf

# the CPU build of torch first: an unpinned torch from PyPI pulls several GB of CUDA libraries
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
# hadolint ignore=DL3013
RUN pip install ".[serve,eval]"   # this source; its dependencies' ranges are in pyproject.toml

RUN useradd --create-home --uid 10001 ovdet && mkdir -p /models && chown ovdet /models
USER 10001
VOLUME ["/models"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["ovdet"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
