import torch

from ovdet.train.common import _flushing, flush_denormals, flushes_denormals


def test_flush_denormals_zeroes_subnormals_inside_and_restores_the_setting():
    tiny = torch.tensor([1e-39])  # below float32's smallest normal number
    assert (tiny * 1.0).item() > 0
    with flush_denormals():
        assert (tiny * 1.0).item() == 0.0
    assert not _flushing()
    torch.set_flush_denormal(True)
    try:
        with flush_denormals():
            pass
        assert _flushing()  # a caller's own setting survives
    finally:
        torch.set_flush_denormal(False)


def test_flushes_denormals_decorator_keeps_the_function_and_its_result():
    @flushes_denormals
    def probe(x: torch.Tensor) -> float:
        """doc"""
        return (x * 1.0).item()

    assert probe(torch.tensor([1e-39])) == 0.0 and probe.__doc__ == "doc"
    assert not _flushing()


def _toy_run(out, steps, stop=None):
    """A one-parameter model trained by `train_resumable` into `out`."""
    from types import SimpleNamespace

    from ovdet.train.common import train_resumable, warmup_cosine

    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = warmup_cosine(opt, 1, steps)
    cfg = SimpleNamespace(steps=steps, seed=0, checkpoint_every=2)

    def step_losses(step, g):
        x = torch.randn(8, 1, generator=g)
        return {"fit": ((model(x) - 3 * x) ** 2).mean(), "size": 1e-3 * model.weight.abs().sum()}

    train_resumable(
        step_losses, out, model, {"kind": "toy"}, opt, sched, cfg, (), "toy", False, stop
    )


def test_the_loss_log_has_every_step_once_after_a_kill_and_a_resume(tmp_path):
    import json

    _toy_run(tmp_path / "a", 7)
    _toy_run(tmp_path / "b", 7, stop=lambda done: done >= 5)  # checkpoint at 5
    log = tmp_path / "b" / "losses.jsonl"
    with log.open("a") as f:  # a kill after step 6 ran but before its checkpoint, mid-line
        f.write('{"step": 5, "lr": 0.1, "loss": 1.0, "fit": 1.0, "size": 0.0}\n{"step": 6, "l')
    _toy_run(tmp_path / "b", 7)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    straight = [json.loads(x) for x in (tmp_path / "a" / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(7)) and lines == straight
    assert set(lines[0]) == {"step", "lr", "loss", "fit", "size"}
    assert lines[0]["loss"] == lines[0]["fit"] + lines[0]["size"]
    assert lines[-1]["fit"] < lines[0]["fit"]  # it is the training's own loss
