"""Shared fixtures: tiny random-weight CLIP saved and re-loaded offline."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One thread per test process: two threads on two busy cores ran the suite up to 13x slower, and
# `make test` runs two processes (pytest-xdist) instead.
torch.set_num_threads(1)


def _missing_extra(report) -> bool:  # noqa: ANN001
    """A skip that `pytest.importorskip` made: an optional dependency is not installed."""
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return False
    return "could not import" in str(report.longrepr[-1])


def _fail_missing_extra(report) -> None:  # noqa: ANN001
    """Under `make test` (OVDET_REQUIRE_EXTRAS=1, every extra installed) a test or module that
    skips for a missing package fails: a dependency left out of ovdet[test] must not pass CI by
    skipping."""
    if os.environ.get("OVDET_REQUIRE_EXTRAS") and _missing_extra(report):
        report.outcome = "failed"
        report.longrepr = f"ovdet[test] lacks a package: {report.longrepr[-1]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001, ANN201
    outcome = yield
    _fail_missing_extra(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # noqa: ANN001, ANN201
    outcome = yield
    _fail_missing_extra(outcome.get_result())


@pytest.fixture(scope="session")
def worker_id() -> str:
    """This process's pytest-xdist worker ("gw0", ...), or "master" without xdist: the plugin's
    own fixture is missing under `-p no:xdist`, and a developer running one file by hand should
    not need `-n`."""
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    from random_clip import save_random_clip

    return save_random_clip(tmp_path_factory.mktemp("tiny-clip"), "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    from ovdet.models.clip import ClipModel

    return ClipModel.from_pretrained(str(tiny_clip_dir))


TINY_SAM = dict(
    vision_config=dict(
        hidden_size=32,
        output_channels=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=16,
        window_size=2,
        global_attn_indexes=(1,),
        num_pos_feats=16,
        mlp_dim=64,
    ),
    prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16),
    mask_decoder_config=dict(
        hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32
    ),
)


@pytest.fixture(scope="session")
def tiny_sam_dir(tmp_path_factory):
    """A random-weight `SamModel` (64 px input) saved with `save_pretrained`. transformers leaves
    the image encoder's weights as allocated (about 1e-11 here: its embeddings are all but zero,
    and nothing can be distilled from them); they are drawn from N(0, 0.02) like the rest."""
    import torch
    from transformers import SamConfig, SamModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-sam")
    model = SamModel(SamConfig(**TINY_SAM))
    with torch.no_grad():
        for p in model.vision_encoder.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.02)
    model.save_pretrained(folder)
    return folder


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, give each worker's initial queue its share of the slow tests first.

    xdist's worksteal hands worker k the k-th contiguous chunk of the collected order, and idle
    workers then steal from the others' queues. A slow test collected late starts late and ends
    last; so slow tests (marked with their approximate `seconds`) are assigned, longest first, to
    the worker with the least slow time so far, and placed at the start of that worker's chunk.
    Slow tests marked with the same `group` go to one worker together (they share a per-process
    fixture, such as a server, that a second worker would start again).
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    slow = [i for i in items if i.get_closest_marker("slow")]
    if workers < 2 or not slow:
        return
    units: dict[str, list] = {}
    for item in slow:
        group = item.get_closest_marker("slow").kwargs.get("group", item.nodeid)
        units.setdefault(group, []).append(item)
    cost = {
        key: sum(float(i.get_closest_marker("slow").kwargs.get("seconds", 30)) for i in unit)
        for key, unit in units.items()
    }
    rest = [i for i in items if not i.get_closest_marker("slow")]
    load = [0.0] * workers
    heads: list[list] = [[] for _ in range(workers)]
    for key in sorted(units, key=lambda key: (-cost[key], key)):
        k = load.index(min(load))
        heads[k] += units[key]
        load[k] += cost[key]
    size = -(-len(items) // workers)  # the chunk size xdist will use
    ordered = []
    for k in range(workers):
        take = max(0, size - len(heads[k])) if k < workers - 1 else len(rest)
        ordered += heads[k] + rest[:take]
        rest = rest[take:]
    items[:] = ordered
