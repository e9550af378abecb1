"""ovdet's OWLv2 pre-processing equals transformers' `Owlv2ImageProcessor` (OWLv2's own recipe:
pad with 0.0 to a square, scikit-image's anti-aliased resize, normalise) on odd-sized images,
down- and upsampled, noisy and smooth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("scipy")  # transformers' PIL-backend processor resizes with scipy.ndimage

from transformers import Owlv2ImageProcessor  # noqa: E402

from ovdet.models.clip import OPENAI_MEAN, OPENAI_STD  # noqa: E402
from ovdet.models.owlv2 import Owlv2  # noqa: E402

SIDE = 96


def _owl() -> Owlv2:
    """The pre-processing parts of an Owlv2 (no weights needed)."""
    owl = Owlv2.__new__(Owlv2)
    owl.side = SIDE
    owl.mean = torch.tensor(OPENAI_MEAN).view(3, 1, 1)
    owl.std = torch.tensor(OPENAI_STD).view(3, 1, 1)
    owl.model = torch.nn.Linear(1, 1)  # `device` reads its parameters
    return owl


@pytest.mark.parametrize("h, w", [(37, 61), (200, 131), (513, 300), (96, 96), (97, 20), (2, 9)])
def test_preprocess_equals_transformers_owlv2_processor(h, w):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "requires torchvision ... falling back" (the PIL one)
        processor = Owlv2ImageProcessor(
            size={"height": SIDE, "width": SIDE},
            image_mean=list(OPENAI_MEAN),
            image_std=list(OPENAI_STD),
        )
    rng = np.random.default_rng(h * 1000 + w)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
    for arr in (rng.integers(0, 256, (h, w, 3), dtype=np.uint8), smooth.astype(np.uint8)):
        want = torch.from_numpy(processor(images=arr, return_tensors="np")["pixel_values"][0])
        got = _owl().preprocess(torch.from_numpy(arr).permute(2, 0, 1))[0]
        torch.testing.assert_close(got, want.float(), atol=1e-4, rtol=0)
    # the padding is OWLv2's 0.0 (OWL-ViT v1's grey 0.5 is off by ~1.9 after normalisation)
    if h != w:
        corner = _owl().preprocess(torch.full((3, h, w), 255, dtype=torch.uint8))[0, :, -1, -1]
        torch.testing.assert_close(corner, (-torch.tensor(OPENAI_MEAN) / torch.tensor(OPENAI_STD)))
