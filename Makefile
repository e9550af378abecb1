# Set-up and test on a fresh machine. `make test` and `make demo` create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on this machine's disk; an unpinned torch would pull CUDA wheels.
TORCH_PIN ?= torch==2.13.0

.PHONY: test demo lint bench docs clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: $(BIN)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/ovdet demo

test: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q
	scripts/ensure-chromium
	OVDET_REQUIRE_BROWSER=1 OVDET_REQUIRE_EXTRAS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist worksteal

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks

bench: $(BIN)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/recognize.py
	cd benchmarks && HF_HUB_OFFLINE=1 ../$(BIN)/python regionspot.py

docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
