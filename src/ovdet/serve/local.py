"""`ovdet serve` in a child process on a free local port: for the browser test, the load test
and benchmarks/serve_load.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """`with LocalServer(["--queue", "64"]) as server:` starts `ovdet serve` on 127.0.0.1 and
    waits until /healthz answers; `server.url`, `server.pid`; stopped on exit."""

    def __init__(self, args: list[str] | None = None, start_timeout_s: float = 120.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args, self.start_timeout_s = list(args or []), start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"ovdet-serve-{self.port}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> LocalServer:
        command = [sys.executable, "-m", "ovdet.cli.main", "serve", "--port", str(self.port)]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(command + self.args, stdout=log, stderr=log)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ovdet serve exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise TimeoutError(f"ovdet serve did not answer in {self.start_timeout_s} s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def memory_kib(self) -> dict[str, int]:
        """The server's resident set now (VmRSS) and its peak so far (VmHWM), in KiB (Linux)."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
        return fields
