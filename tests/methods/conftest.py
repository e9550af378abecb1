"""Fixtures shared by the methods' tests."""

import pytest
from once import built_once
from real_scale import STEPS, build_fpn_runs


@pytest.fixture(scope="session")
def fpn_run(tmp_path_factory, worker_id):
    """(root, {0: untrained folder, STEPS: trained folder}) of the shared FPN ViLD-text run
    (tests/real_scale.py), built once for all xdist workers."""
    root = built_once(tmp_path_factory, worker_id, "vild-fpn", build_fpn_runs)
    return root, {s: root / f"vild-{s}" for s in (0, STEPS)}
