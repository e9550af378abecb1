import pytest
import torch

from ovdet.errors import FormatError
from ovdet.models.bundled import bundled_path
from ovdet.models.loader import load_model
from ovdet.models.shapes_clip import ShapesClip, ShapesClipConfig, ShapesClipModel
from ovdet.train.shapes_clip import build_tokenizer


@pytest.fixture(scope="module")
def random_shapes_clip(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = build_tokenizer(["a red star", "a blue moon next to a green ring"])
    model = ShapesClipModel(
        ShapesClipConfig(vocab_size=len(tokenizer), channels=(8, 8, 16, 16), embed_dim=16)
    )
    folder = tmp_path_factory.mktemp("shapes-clip")
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model


def test_loads_through_the_same_front_door(random_shapes_clip):
    folder, model = random_shapes_clip
    vlm = load_model(str(folder))
    assert isinstance(vlm, ShapesClip) and vlm.embed_dim == 16 and vlm.patch_size == 8
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = torch.nn.functional.normalize(model.image_features(pixels), dim=-1)
    torch.testing.assert_close(vlm.encode_image(pixels), want)
    dense, global_ = vlm.encode_dense(torch.randn(1, 3, 128, 96), with_global=True)
    assert dense.shape == (1, 16, 16, 12) and global_.shape == (1, 16)


def test_text_pools_at_eos_not_at_padding(random_shapes_clip):
    folder, _ = random_shapes_clip
    vlm = load_model(str(folder))
    alone = vlm.encode_text(["a red star"])
    padded = vlm.encode_text(["a red star", "a blue moon next to a green ring"])[:1]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-4)
    ids = vlm.tokenizer(["a red star"]).input_ids[0]
    assert ids[0] == vlm.model.config.bos_token_id and ids[-1] == vlm.model.config.eos_token_id == 1
    assert vlm.tokenizer(["zzz"]).input_ids[0][1] == vlm.tokenizer.unk_token_id


def test_dense_map_is_local_and_pools_to_the_image_embedding(random_shapes_clip):
    """What dense recognition relies on, through the public wrapper: each cell of the dense map
    sees its neighbourhood only (a change in one corner leaves the far cells as they were), and
    the map's global vector is the image embedding of a separate `encode_image` pass."""
    folder, _ = random_shapes_clip
    vlm = load_model(str(folder))
    x = torch.randn(1, 3, 128, 128)
    y = x.clone()
    y[..., :16, :16] = torch.randn(3, 16, 16)  # the top-left corner changes
    dense_x, global_x = vlm.encode_dense(x, with_global=True)
    dense_y, _ = vlm.encode_dense(y, with_global=True)
    torch.testing.assert_close(dense_y[..., 8:, 8:], dense_x[..., 8:, 8:])  # far cells: same
    assert not torch.allclose(dense_y[..., :2, :2], dense_x[..., :2, :2])  # near cells: changed
    torch.testing.assert_close(global_x, vlm.encode_image(x))


def test_bundled_model_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert (bundled_path("shapes-clip") / "model.safetensors").stat().st_size < 20 * 2**20
    vlm = load_model("shapes-clip")
    assert isinstance(vlm, ShapesClip) and vlm.encode_text(["a photo of a star."]).shape == (
        1,
        vlm.embed_dim,
    )


def test_unknown_model_type_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(FormatError, match="'bert' model; supported"):
        load_model(str(tmp_path))
