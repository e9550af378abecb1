"""A resume test that fails when resume is broken.

Step k's randomness depends only on (seed, k), so a "resume" that starts over reaches the same
weights as an uninterrupted run: equal weights alone prove nothing. `assert_resumes` also checks
what resume is for:
- the resumed run executes only the steps after the kill (counted through `stop`, which the
  trainers call after every step they run);
- the optimizer and the schedule come from the state file: a copy of the killed run whose
  optimizer moments (or schedule) were tampered with ends elsewhere.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from ovdet.train.common import STATE

# train(out, stop) -> the run's checkpoint folder; `stop` is the trainers' per-step callback.
Train = Callable[[Path, Callable[[int], bool] | None], Path]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(Path(folder) / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], msg=k)


def _tamper(path: Path, what: str) -> None:
    """Negate the optimizer's first moments, or scale the schedule's base rates by 10."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if what == "optimizer":
        moments = [s["exp_avg"] for s in state["optimizer"]["state"].values()]
        assert moments and any(m.abs().sum() > 0 for m in moments), "no optimizer state to tamper"
        for m in moments:
            m.neg_()
    else:
        state["scheduler"]["base_lrs"] = [10 * lr for lr in state["scheduler"]["base_lrs"]]
    torch.save(state, path)


def steps_run_after_resume(train: Train, out: Path) -> tuple[Path, list[int]]:
    """Resume the run in `out`; return its folder and the step counts it executed."""
    seen: list[int] = []
    folder = train(out, lambda done: seen.append(done) or False)
    return folder, seen


def assert_resumes(train: Train, root: Path, steps: int, kill_at: int) -> Path:
    """A run killed after `kill_at` of `steps` steps resumes at step `kill_at`, ends with an
    uninterrupted run's weights, and reads its optimizer and schedule from the state file.
    Returns the killed-and-resumed run's folder (resuming it again must be refused or a no-op).
    """
    assert 0 < kill_at <= steps - 2, "two steps after the kill are needed to see the schedule"
    straight = train(root / "straight", None)
    cut = root / "cut"
    train(cut, lambda done: done >= kill_at)
    assert torch.load(cut / STATE, weights_only=True)["step"] == kill_at
    for what in ("optimizer", "scheduler"):
        shutil.copytree(cut, root / what)
        _tamper(root / what / STATE, what)
    resumed, seen = steps_run_after_resume(train, cut)
    assert seen == list(range(kill_at + 1, steps + 1)), f"the resumed run ran steps {seen}"
    assert_same_weights(straight, resumed)
    want = weights(straight)
    for what in ("optimizer", "scheduler"):
        got = weights(train(root / what, None))
        same = all(torch.allclose(got[k].float(), want[k].float()) for k in want)
        assert not same, f"a tampered {what} state changed nothing: resume did not read it"
    return resumed
