"""Atomic file writes: write to a temporary file beside the target, then rename over it.

Temporary names carry the writer's process id (`.<name>.<pid>.<random>.tmp`), so a later run can
tell the leftovers of a killed writer (SIGKILL, power loss) from those of one still running and
sweeps them (`sweep_stale`) the first time it writes into that folder. Outputs get the mode the
umask gives a new file (mkstemp alone would make every output 0600).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

_SWEPT: set[Path] = set()
_LOCK = threading.Lock()
_UMASK: int | None = None


def _umask() -> int:
    """The process umask (read once; setting it back at once leaves the process unchanged)."""
    global _UMASK
    if _UMASK is None:
        with _LOCK:
            current = os.umask(0o022)
            os.umask(current)
            _UMASK = current
    return _UMASK


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def sweep_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove `.<name>.<pid>.<random>.tmp` files and folders in `folder` whose writer is dead.

    Returns the removed paths. Temporary files of live processes (a concurrent writer) are kept.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.glob(".*.tmp"):
        parts = entry.name.rsplit(".", 3)  # [".name", pid, random, "tmp"]
        if len(parts) != 4 or not parts[1].isdigit() or _pid_alive(int(parts[1])):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry)
    return removed


def _prepare(folder: Path) -> None:
    """Create `folder` and sweep its stale temporary files once per process."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder.resolve()
    if key not in _SWEPT:
        sweep_stale(folder)
        _SWEPT.add(key)


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` on success.

    On an exception the temporary file is removed and `path` keeps its old content.
    """
    path = Path(path)
    _prepare(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces `path` only when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """Write `obj` as JSON to `path` atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent)


def check_replaceable(path: str | os.PathLike, marker: str, what: str) -> None:
    """Refuse (one line) an `atomic_folder` target that is a file, or a folder holding other
    files: it must be new, empty, or an earlier `what` (a folder with `marker` in it), since the
    write replaces the folder whole. Call it before the work, not after."""
    from ovdet.errors import OvdetError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OvdetError(f"--out {path} is a file, not a folder")
    if path.is_dir() and any(path.iterdir()) and not (path / marker).is_file():
        raise OvdetError(
            f"--out {path} holds other files; the {what} replaces its folder whole, so give a "
            f"new or empty folder (or an earlier {what})"
        )


def _file_id(path: str | os.PathLike | None) -> tuple[int, int] | None:
    """(device, inode) of an existing path; None for None, a missing path or inline text."""
    if path is None:
        return None
    try:
        st = os.stat(os.path.expanduser(path))
    except (OSError, ValueError):  # missing, or text that cannot be a path (too long, a NUL)
        return None
    return st.st_dev, st.st_ino


def refuse_overwriting(
    outputs: Iterable[str | os.PathLike],
    inputs: Iterable[str | os.PathLike | None],
    flag: str = "--out",
) -> None:
    """Refuse (one line) a run whose output files would replace one of its inputs (the same file
    by device and inode, so links and `./` spellings count): `detect scene.png --out .` would
    overwrite the photo with its annotated picture, `--out val.json --gt val.json` the ground
    truth. Only existing paths can collide, so inputs may be None, missing or inline text (an
    inline --vocab); call it before any work."""
    from ovdet.errors import OvdetError

    taken = {key: path for path in inputs if (key := _file_id(path)) is not None}
    for path in outputs:
        hit = taken.get(_file_id(path))
        if hit is not None:
            raise OvdetError(
                f"{flag} would write {path} over the input {hit}; choose another {flag}"
            )


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; it replaces `path` (files and all) on success.

    A reader sees the old folder or the new one, never a half-written mix; on an exception the
    temporary folder is removed and `path` is untouched.
    """
    path = Path(path)
    _prepare(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")  # not swept: it may be all that is left
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
