import numpy as np
import pytest
import torch
import torch.nn.functional as F
from random_clip import save_random_clip
from transformers import CLIPModel

from ovdet.errors import WeightsNotFoundError
from ovdet.models.clip import ClipModel


@pytest.fixture(scope="module")
def reference(tiny_clip_dir):
    return CLIPModel.from_pretrained(str(tiny_clip_dir)).eval()


def pooled(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_text_and_image_embeddings_equal_transformers(tiny_clip, reference):
    texts = ["a photo of a cat.", "traffic cone", "a red umbrella in the scene"]
    tokens = tiny_clip.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        want_text = F.normalize(pooled(reference.get_text_features(**tokens)), dim=-1)
        pixels = torch.randn(3, 3, 32, 32)
        want_image = F.normalize(pooled(reference.get_image_features(pixel_values=pixels)), dim=-1)
    torch.testing.assert_close(tiny_clip.encode_text(texts), want_text)
    torch.testing.assert_close(tiny_clip.encode_text(texts, batch_size=1), want_text)
    torch.testing.assert_close(tiny_clip.encode_image(pixels), want_image)
    assert tiny_clip.embed_dim == 16 and tiny_clip.logit_scale == pytest.approx(
        np.exp(2.6592), rel=1e-4
    )


def test_dense_is_value_path_of_last_block(tiny_clip, reference):
    pixels = torch.randn(2, 3, 32, 32)
    dense, global_ = tiny_clip.encode_dense(pixels, with_global=True)
    assert dense.shape == (2, 16, 4, 4)
    torch.testing.assert_close(global_, tiny_clip.encode_image(pixels))
    torch.testing.assert_close(dense.norm(dim=1), torch.ones(2, 4, 4))
    # By hand from transformers' hidden states: LN1 -> v_proj -> out_proj -> post-LN -> projection.
    vm = reference.vision_model
    with torch.no_grad():
        h = vm(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        last = vm.encoder.layers[-1]
        x = F.layer_norm(h, (32,), last.layer_norm1.weight, last.layer_norm1.bias, 1e-5)
        x = F.linear(
            F.linear(x, last.self_attn.v_proj.weight, last.self_attn.v_proj.bias),
            last.self_attn.out_proj.weight,
            last.self_attn.out_proj.bias,
        )
        x = F.layer_norm(x, (32,), vm.post_layernorm.weight, vm.post_layernorm.bias, 1e-5)
        want = F.normalize(x @ reference.visual_projection.weight.t(), dim=-1)
    torch.testing.assert_close(dense.flatten(2).transpose(1, 2), want, atol=1e-5, rtol=1e-4)


def test_dense_other_sizes(tiny_clip):
    assert tiny_clip.encode_dense(torch.randn(1, 3, 64, 48)).shape == (1, 16, 8, 6)
    with pytest.raises(ValueError, match="divisible by 8"):
        tiny_clip.encode_dense(torch.randn(1, 3, 30, 32))


def test_preprocess_close_to_transformers_processor(tiny_clip, tiny_clip_dir):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil.from_pretrained(str(tiny_clip_dir))
    yy, xx = np.mgrid[0:60, 0:80]
    arr = np.stack([yy * 4, xx * 3, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)
    want = processor(images=arr, return_tensors="pt")["pixel_values"]
    got = tiny_clip.preprocess([torch.from_numpy(arr).permute(2, 0, 1)])
    assert got.shape == want.shape == (1, 3, 32, 32)
    diff = (got - want).abs()
    # PIL's bicubic kernel (a=-0.5) and torch's (a=-0.75) differ slightly; crops must align.
    assert diff.mean() < 0.05 and diff.max() < 0.2, (diff.mean(), diff.max())


def test_reload_is_identical_and_fingerprint_tracks_weights(tiny_clip, tiny_clip_dir, tmp_path):
    again = ClipModel.from_pretrained(str(tiny_clip_dir))
    assert again.fingerprint == tiny_clip.fingerprint
    other = ClipModel.from_pretrained(str(save_random_clip(tmp_path / "other", "tiny", seed=1)))
    assert other.fingerprint != tiny_clip.fingerprint


def test_missing_weights_give_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError) as info:
        ClipModel.from_pretrained("clip-b16")
    message = str(info.value)
    assert (
        "\n" not in message
        and "openai/clip-vit-base-patch16" in message
        and "hf download" in message
    )
    with pytest.raises(WeightsNotFoundError, match="folder not found"):
        ClipModel.from_pretrained(str(tmp_path / "no-such-folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsNotFoundError, match="lacks model files"):
        ClipModel.from_pretrained(str(tmp_path / "empty"))


@pytest.mark.parametrize("hw", [(60, 80), (480, 640), (80, 60)])
def test_preprocess_equals_transformers_on_noise(tiny_clip, tiny_clip_dir, reference, hw):
    """On noise a crop shifted by one column is a different image: 4:3 at side 32 resizes the
    long side to int(42.67) = 42 columns in CLIPImageProcessor; rounding to 43 moved the crop."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil.from_pretrained(str(tiny_clip_dir))
    arr = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    want = processor(images=arr, return_tensors="pt")["pixel_values"]
    got = tiny_clip.preprocess([torch.from_numpy(arr).permute(2, 0, 1)])
    # bicubic kernels differ (PIL a=-0.5, torch a=-0.75): 0.004 mean; a shifted crop: > 0.3
    assert (got - want).abs().mean() < 0.02
    with torch.no_grad():
        emb = F.normalize(pooled(reference.get_image_features(pixel_values=want)), dim=-1)
    assert (tiny_clip.encode_image(got) - emb).norm(dim=-1).max() < 0.01
