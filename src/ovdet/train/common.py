"""What every trainer shares: the step loop, the learning-rate schedule, checkpoints and exact
resume.

`run_steps` is the one training loop: each method supplies a function from (step, generator) to
its named losses; the loop seeds step k's randomness from (seed, k) alone (so a killed run resumes
exactly), sums and checks the losses, steps optimizer and schedule, shows progress, checkpoints,
and ends early when a `stop` callback says so (tests use it to simulate a kill).

A checkpoint folder holds three files:
- `train_state.pt`: **the resume unit**, one file written atomically: the model's weights, the
  optimizer and schedule states, the step and the run's spec. A kill at any moment leaves either
  the previous or the new one, never a mix, so a resumed run equals an uninterrupted one.
- `model.safetensors` and `spec.json`: the inference view (what loaders read), rewritten after
  the state at every checkpoint, each atomically. They are never read to resume.
State files are read with `torch.load(..., weights_only=True)`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from ovdet.errors import FormatError, OvdetError
from ovdet.io.atomic import atomic_path, write_json
from ovdet.train.distributed import Distributed, average_gradients, barrier, mean_values
from ovdet.train.precision import Precision

STATE = "train_state.pt"
log = logging.getLogger(__name__)


def _flushing() -> bool:
    """Whether this thread treats subnormal floats as zero now (torch has no getter)."""
    return (torch.tensor([1e-39]) * 1.0).item() == 0.0


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero inside the block, then restore the previous setting.

    On x86 CPUs an operation on subnormal inputs runs up to 200x slower (measured here: a
    (2048, 288) @ (288, 96) product takes 1 ms, 206 ms with subnormal inputs), and small
    gradients of small models drift into that range: the shapes-world SAM's training step took
    twice as long. GPUs flush already; the numerical effect is below float32's resolution of
    normal numbers (values under 1.2e-38 become 0).
    """
    before = _flushing()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def flushes_denormals(train: Callable) -> Callable:
    """Decorate a training function to run under `flush_denormals`."""

    @functools.wraps(train)
    def wrapped(*args, **kwargs):
        with flush_denormals():
            return train(*args, **kwargs)

    return wrapped


def check_batch_size(batch_size: int, available: int, what: str = "training images") -> None:
    """Refuse (one line) a batch larger than the set it is drawn from: batches are drawn with
    replacement, so `--batch-size 100000` on 500 images would decode 100,000 images a step."""
    if available == 0:
        raise OvdetError(f"no {what} to draw batches from")
    if batch_size > available:
        raise OvdetError(
            f"--batch-size {batch_size} is larger than the {available} {what}; give at most "
            f"{available}"
        )


def warmup_cosine(
    opt: torch.optim.Optimizer, warmup: int, steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup` steps times a cosine decay to 0 at `steps`."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / max(1, warmup))
            * 0.5
            * (1 + math.cos(math.pi * min(s, steps) / max(1, steps)))
        ),
    )


StepLosses = Callable[[int, torch.Generator], dict[str, torch.Tensor]]


def step_seed(seed: int, step: int) -> int:
    """The seed of step `step` of a run seeded `seed`."""
    return seed * 1_000_003 + step


def run_steps(
    step_losses: StepLosses,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    steps: int,
    seed: int,
    *,
    start: int = 0,
    desc: str = "train",
    progress: bool = True,
    grad_clip: float | None = None,
    checkpoint: Callable[[int], None] | None = None,
    checkpoint_every: int = 0,
    stop: Callable[[int], bool] | None = None,
    log: Path | None = None,
    precision: Precision | None = None,
    world: int = 1,
) -> int:
    """Train steps `start` .. `steps` - 1; returns the number of steps done when it ended.

    The progress bar shows each loss's running mean over the last `WINDOW` steps; `log` (a
    JSON-lines file) gets one line per step: the step, the learning rate and every loss (with
    several processes, each loss's mean over them: the whole batch's, not one share's).

    Args:
        step_losses: (step, generator) -> named scalar losses; their sum is minimised. The
            generator and torch's global generator are both seeded with `step_seed(seed, step)`.
        grad_clip: clip the gradients' global norm to this.
        checkpoint: called with the number of steps done every `checkpoint_every` steps, at the
            end, and when stopping.
        stop: called after each step with the steps done; True checkpoints and ends the run
            (a time budget, a signal; tests simulate a kill with it).
        log: the loss log; lines of steps >= `start` (run before a kill, not checkpointed) are
            dropped first, so a resumed run's log has each step once.
        precision: autocast and loss scaling (default fp32).
        world: the number of processes training together (their gradients are averaged).
    """
    amp = precision or Precision()
    bar = tqdm(
        range(start, steps),
        desc=desc,
        unit="step",
        initial=start,
        total=steps,
        disable=not progress,
    )
    done = start
    recent: deque[dict[str, float]] = deque(maxlen=WINDOW)
    writer = LossLog(log, start) if log is not None else None
    for step in bar:
        torch.manual_seed(step_seed(seed, step))
        with amp.autocast():
            losses = step_losses(step, torch.Generator().manual_seed(step_seed(seed, step)))
        losses = {k: v.float() for k, v in losses.items()}
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            parts = {k: round(v.item(), 4) for k, v in losses.items()}
            raise FloatingPointError(f"loss is {loss.item()} at step {step}: {parts}")
        opt.zero_grad(set_to_none=True)
        amp.backward(loss)
        average_gradients(model.parameters(), world)
        if grad_clip is not None:
            amp.unscale(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        lr = opt.param_groups[0]["lr"]
        amp.step(opt)
        sched.step()
        values = mean_values({k: v.detach() for k, v in losses.items()}, world)
        recent.append(values)
        bar.set_postfix(running_means(recent))
        if writer is not None:
            writer.write({"step": step, "lr": lr, "loss": sum(values.values())} | values)
        done = step + 1
        stopping = stop is not None and stop(done)
        if checkpoint is not None and (
            stopping or done == steps or (checkpoint_every and done % checkpoint_every == 0)
        ):
            checkpoint(done)
        if stopping:
            break
    if writer is not None:
        writer.close()
    return done


WINDOW = 20  # steps in the progress bar's running means


def running_means(recent: deque[dict[str, float]]) -> dict[str, str]:
    """Each loss's mean over the recent steps that had it (methods alternate batch kinds)."""
    names = list(dict.fromkeys(k for r in recent for k in r))
    means = {k: [r[k] for r in recent if k in r] for k in names}
    return {k: f"{sum(v) / len(v):.3f}" for k, v in means.items()}


LOSS_LOG = "losses.jsonl"


class LossLog:
    """An append-only JSON-lines log that first drops the lines of steps >= `start`."""

    def __init__(self, path: Path, start: int) -> None:
        path = Path(path)
        lines = path.read_text().splitlines() if path.is_file() else []
        kept = []
        for line in lines:
            try:
                if json.loads(line)["step"] >= start:
                    break
            except (ValueError, KeyError, TypeError):
                break  # a line cut by a kill ends the usable log
            kept.append(line)
        if len(kept) < len(lines):
            with atomic_path(path) as tmp:
                tmp.write_text("".join(f"{line}\n" for line in kept))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a")

    def write(self, record: dict[str, float]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    spec: dict[str, Any],
    opt: torch.optim.Optimizer | None = None,
    sched: Any = None,
    step: int | None = None,
    precision: Precision | None = None,
) -> None:
    """Write the resume unit (when `opt` is given) and then the inference view of `folder`."""
    folder = Path(folder)
    weights = _weights(model)
    if opt is not None:
        state = {
            "model": weights,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else {},
            "step": int(step or 0),
            "spec": json.dumps(spec, sort_keys=True),
        }
        if precision is not None and precision.scaler is not None:
            state["scaler"] = precision.state_dict()
        with atomic_path(folder / STATE) as tmp:
            torch.save(state, tmp)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(weights, str(tmp))
    write_json(folder / "spec.json", spec, indent=1)


def resume(
    folder: Path,
    model: nn.Module,
    spec: dict[str, Any],
    opt: torch.optim.Optimizer,
    sched: Any,
    same: tuple[str, ...],
    precision: Precision | None = None,
) -> int:
    """Load `folder`'s resume unit into model, optimizer, schedule (and fp16 loss scaler);
    return its step (0 if the folder holds no run). Refuses a run whose spec differs from `spec`
    in any key of `same`."""
    path = Path(folder) / STATE
    if not path.is_file():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        previous = json.loads(state["spec"])
    except Exception as e:  # a truncated or foreign file: say which, never unpickle
        raise FormatError(f"cannot resume from {path}: {type(e).__name__}: {e}") from None
    now = json.loads(json.dumps(spec))  # tuples and lists compare as JSON sees them
    changed = [k for k in same if previous.get(k) != now.get(k)]
    if changed:
        raise OvdetError(
            f"{folder} holds a run with another configuration ({changed[0]}: "
            f"{previous.get(changed[0])!r} there, {now.get(changed[0])!r} now); resume it with "
            "the same options or use another --out"
        )
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if precision is not None:
        precision.load_state_dict(state.get("scaler", {}))
    return int(state["step"])


def train_resumable(
    step_losses: StepLosses,
    out: Path,
    model: nn.Module,
    spec: dict[str, Any],
    opt: torch.optim.Optimizer,
    sched: Any,
    cfg: Any,
    same: tuple[str, ...],
    desc: str,
    progress: bool = True,
    stop: Callable[[int], bool] | None = None,
    precision: Precision | None = None,
    where: Distributed | None = None,
    started: Callable[[int], None] | None = None,
) -> None:
    """`run_steps` for a trainer that checkpoints into `out` and resumes from it.

    `cfg` gives `steps`, `seed` and `checkpoint_every`; a run in `out` is resumed (refused if
    its spec differs in a key of `same`). A run that trains no step now (steps 0, or one killed
    after its last state) still leaves the inference view of the state it holds. With several
    processes (`where`), each resumes from the same file and rank 0 alone writes; `started`
    is told the step the run resumes at (a data loader starts there).
    """
    where = where or Distributed()
    start = resume(out, model, spec, opt, sched, same=same, precision=precision)
    if start:
        log.info("resuming %s at step %d", out, start)
    if started is not None:
        started(start)
    model.train()

    def checkpoint(done: int) -> None:
        if where.main:
            save_checkpoint(out, model, spec, opt, sched, done, precision)
        barrier(where)  # no rank runs ahead of a checkpoint it might resume from

    run_steps(
        step_losses,
        model,
        opt,
        sched,
        cfg.steps,
        cfg.seed,
        start=start,
        desc=desc,
        progress=progress and where.main,
        checkpoint=checkpoint,
        checkpoint_every=cfg.checkpoint_every,
        stop=stop,
        log=Path(out) / LOSS_LOG if where.main else None,
        precision=precision,
        world=where.world,
    )
    if start >= cfg.steps and where.main:
        save_checkpoint(out, model, spec)
    barrier(where)
