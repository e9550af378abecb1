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
