import pytest
import torch
from transformers import SamModel

from ovdet.errors import WeightsNotFoundError
from ovdet.models.sam import SamBackend


@pytest.fixture(scope="module")
def sam_dir(tiny_sam_dir):
    return tiny_sam_dir


BOXES = torch.tensor([[2.0, 3, 40, 30], [10, 10, 70, 45], [0, 0, 80, 48]])


def test_masks_and_iou_equal_transformers(sam_dir):
    sam = SamBackend.from_pretrained(str(sam_dir))
    image = torch.randint(
        0, 255, (3, 48, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    state = sam.set_image(image)
    pred = sam.predict_boxes(state, BOXES)
    pixels, scale, resized = sam.preprocess(image)
    assert scale == 0.8 and resized == (38, 64)
    reference = SamModel.from_pretrained(str(sam_dir)).eval()
    with torch.no_grad():
        out = reference(
            pixel_values=pixels, input_boxes=(BOXES * scale)[None], multimask_output=False
        )
    torch.testing.assert_close(pred.logits, out.pred_masks[0, :, 0])
    torch.testing.assert_close(pred.iou, out.iou_scores[0, :, 0])
    assert pred.masks.shape == (3, 48, 80) and pred.masks.dtype == torch.bool
    assert pred.tokens.shape == (3, 32) and not torch.allclose(pred.tokens[0], pred.tokens[1])


def test_token_variants_and_batching(sam_dir):
    sam = SamBackend.from_pretrained(str(sam_dir))
    state = sam.set_image(torch.randint(0, 255, (3, 40, 40), dtype=torch.uint8))
    after_transformer = sam.predict_boxes(state, BOXES[:2] / 2).tokens
    after_mlp = sam.predict_boxes(state, BOXES[:2] / 2, token="mlp").tokens
    with torch.no_grad():
        torch.testing.assert_close(
            after_mlp, sam.model.mask_decoder.output_hypernetworks_mlps[0](after_transformer)
        )
    assert sam.predict_boxes(state, BOXES[:2] / 2, token="prompt").tokens.shape == (2, 32)
    one_by_one = sam.predict_boxes(state, BOXES[:2] / 2, batch_size=1).tokens
    torch.testing.assert_close(one_by_one, after_transformer, atol=1e-5, rtol=1e-4)
    empty = sam.predict_boxes(state, torch.zeros(0, 4))
    assert empty.masks.shape == (0, 40, 40) and empty.tokens.shape == (0, 32)
    with pytest.raises(ValueError, match="token must be one of"):
        sam.predict_boxes(state, BOXES, token="after-mlp")


def test_missing_sam_weights_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        SamBackend.from_pretrained("sam-b")
    assert "facebook/sam-vit-base" in str(info.value) and "\n" not in str(info.value)
