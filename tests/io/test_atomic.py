import os
import stat

import pytest

from ovdet.io import atomic
from ovdet.io.atomic import atomic_folder, atomic_path, sweep_stale, write_json


def test_outputs_get_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        atomic._UMASK = None  # read afresh
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_folder(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
        atomic._UMASK = None
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o750


def test_stale_temporary_files_of_dead_writers_are_swept(tmp_path):
    dead = 2**22 + 12345  # above pid_max's default: no such process
    stale = tmp_path / f".model.safetensors.{dead}.abcd.tmp"
    stale.write_text("half")
    stale_dir = tmp_path / f".world.{dead}.efgh.tmp"
    stale_dir.mkdir()
    live = tmp_path / f".state.pt.{os.getpid()}.ijkl.tmp"
    live.write_text("mine")
    unrelated = tmp_path / ".notes.tmp"
    unrelated.write_text("keep")
    removed = sweep_stale(tmp_path)
    assert set(removed) == {stale, stale_dir}
    assert live.exists() and unrelated.exists() and not stale.exists()


def test_first_write_into_a_folder_sweeps_it(tmp_path):
    stale = tmp_path / f".x.json.{2**22 + 7}.zz.tmp"
    stale.write_text("half")
    write_json(tmp_path / "y.json", [1])
    assert not stale.exists()


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("new")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]
