"""Build test data once per run, for all pytest-xdist workers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def built_once(tmp_path_factory, worker_id: str, name: str, build: Callable[[Path], None]) -> Path:
    """A folder filled by `build(folder)` once per test run, shared by all xdist workers: the
    first worker to ask builds it under a file lock, the others wait and reuse it."""
    if worker_id == "master":  # no xdist: this process is the only one
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp().parent  # this run's folder, shared by its workers
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            folder.mkdir(exist_ok=True)
            build(folder)
            done.touch()
    return folder
