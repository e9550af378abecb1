import pytest
import torch
import torch.nn.functional as F

from ovdet.errors import BoxError
from ovdet.recognize.core import classify_images, recognize, requery
from ovdet.recognize.crop import CropEmbedder, crop_regions
from ovdet.recognize.dense import DenseEmbedder
from ovdet.types import Regions


def scene(h=48, w=64, seed=0):
    """An image made of distinct random blocks, so different boxes see different content."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, 256, (3, h // 8, w // 8), generator=g, dtype=torch.uint8)
    return blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)


BOXES = torch.tensor([[0.0, 0, 24, 24], [30, 5, 60, 40], [8, 28, 40, 47], [44, 0, 64, 16]])


def test_crop_regions_copies_pixels_when_sizes_match():
    image = torch.arange(3 * 10 * 12, dtype=torch.float32).reshape(3, 10, 12)
    crop = crop_regions(image, torch.tensor([[2.0, 3, 8, 9]]), 6)
    torch.testing.assert_close(crop[0], image[:, 3:9, 2:8])


@pytest.mark.parametrize("method", ["crop", "dense"])
def test_each_region_is_named_by_its_own_embedding(tiny_clip, method):
    image = scene()
    embedder = CropEmbedder(tiny_clip) if method == "crop" else DenseEmbedder(tiny_clip, 64)
    emb = embedder.embed(image, BOXES)
    assert emb.shape == (4, 16)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    # a vocabulary whose "text" for class i is region i's embedding must label box i as i
    regions = recognize(image, BOXES, emb, embedder, logit_scale=100.0)
    assert regions.labels.tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(regions.data["class_scores"].sum(1), torch.ones(4))
    assert torch.equal(regions.scores, regions.data["class_scores"].max(1).values)
    # a permuted vocabulary permutes the labels
    perm = torch.tensor([2, 0, 3, 1])
    assert recognize(image, BOXES, emb[perm], embedder, 100.0).labels.tolist() == [1, 3, 0, 2]


def test_crop_ensemble_is_sum_of_normalised_scales(tiny_clip):
    image = scene()
    one = CropEmbedder(tiny_clip, scales=(1.0,)).embed(image, BOXES[:2])
    both = CropEmbedder(tiny_clip, scales=(1.0, 1.5)).embed(image, BOXES[:2])
    from ovdet.ops.boxes import clip_boxes, expand_boxes

    big = CropEmbedder(tiny_clip, scales=(1.0,)).embed(
        image, clip_boxes(expand_boxes(BOXES[:2], 1.5), (48, 64))
    )
    torch.testing.assert_close(both, F.normalize(one + big, dim=-1))
    batched = CropEmbedder(tiny_clip, batch_size=1).embed(image, BOXES)
    torch.testing.assert_close(
        batched, CropEmbedder(tiny_clip).embed(image, BOXES), atol=1e-5, rtol=1e-4
    )


def test_dense_whole_box_is_mean_of_the_map(tiny_clip):
    square = scene(32, 32)
    rec = DenseEmbedder(tiny_clip)  # native 32 px input, 4x4 map
    dense, _, scale = rec.dense_map(square)
    got = rec.embed(square, torch.tensor([[0.0, 0, 32, 32]]))
    torch.testing.assert_close(got, F.normalize(dense.mean((2, 3)), dim=-1))
    # a tall image is letterboxed: the image occupies the left half of the map
    tall = scene(64, 32)
    dense, _, scale = rec.dense_map(tall)
    assert scale == 0.5
    got = rec.embed(tall, torch.tensor([[0.0, 0, 32, 64]]))
    torch.testing.assert_close(got, F.normalize(dense[..., :2].mean((2, 3)), dim=-1))
    with pytest.raises(ValueError, match="multiple of 8"):
        DenseEmbedder(tiny_clip, 30)


def test_recognize_rejects_bad_boxes(tiny_clip):
    image, text = scene(), torch.randn(2, 16)
    rec = DenseEmbedder(tiny_clip)
    with pytest.raises(BoxError, match="box 1 .* inverted"):
        recognize(image, torch.tensor([[0.0, 0, 5, 5], [9, 9, 2, 2]]), text, rec, 100.0)
    with pytest.raises(BoxError, match="outside"):
        recognize(image, torch.tensor([[100.0, 100, 120, 120]]), text, rec, 100.0)
    with pytest.raises(BoxError, match="image of size"):
        recognize(image, Regions(torch.zeros(1, 4), (10, 10)), text, rec, 100.0)
    empty = recognize(image, torch.zeros(0, 4), text, rec, 100.0)
    assert len(empty) == 0 and empty.data["class_scores"].shape == (0, 2)


def test_recognize_keeps_input_columns(tiny_clip):
    image = scene()
    regions = Regions(BOXES, (48, 64), data={"source": ["a", "b", "c", "d"]})
    out = recognize(image, regions, torch.randn(3, 16), DenseEmbedder(tiny_clip), 100.0)
    assert out.data["source"] == ["a", "b", "c", "d"] and out.embeddings.shape == (4, 16)


def test_requery_and_classify(tiny_clip):
    image = scene()
    rec = DenseEmbedder(tiny_clip, 64)
    regions = recognize(image, BOXES, torch.randn(2, 16), rec, 100.0)
    q = requery(regions, regions.embeddings[[3, 1]], 100.0)
    assert q.shape == (4, 2) and q[3].argmax() == 0 and q[1].argmax() == 1
    with pytest.raises(ValueError, match="embeddings"):
        requery(Regions(BOXES, (48, 64)), torch.randn(2, 16), 100.0)
    images = [scene(seed=s) for s in range(3)]
    text = tiny_clip.encode_image(tiny_clip.preprocess(images))
    probs = classify_images(tiny_clip, images, text, batch_size=2)
    assert probs.argmax(1).tolist() == [0, 1, 2]
    torch.testing.assert_close(probs.sum(1), torch.ones(3))


def test_relabel_with_attributes(tiny_clip):
    from ovdet.recognize.core import relabel_with_attributes
    from ovdet.types import Vocabulary

    vocab = Vocabulary(("apple", "pear"), attributes=("red", "green", "blue"))
    regions = recognize(scene(), BOXES, torch.randn(2, 16), DenseEmbedder(tiny_clip), 100.0)
    out, names = relabel_with_attributes(regions, torch.randn(3, 16), vocab, 100.0)
    assert len(names) == 6 and out.data["class_scores"].shape == (4, 6)
    torch.testing.assert_close(out.data["class_scores"].sum(1), torch.ones(4))
    assert (out.labels // 3 == regions.labels).all()  # the object part of the joint label is kept
    with pytest.raises(ValueError, match="needs regions from recognize"):
        relabel_with_attributes(Regions(BOXES, (48, 64)), torch.randn(3, 16), vocab, 100.0)


def test_dense_default_is_the_models_dense_size():
    """The README's shapes-world dense rows ran at 128 px: that is shapes-clip's default, so a
    plain `--method dense` reproduces them (64 px, its caption size, gave AP 34 vs 87)."""
    from ovdet.models.loader import load_model

    shapes = load_model("shapes-clip")
    assert shapes.image_size == 64 and shapes.dense_size == 128
    assert DenseEmbedder(shapes).input_size == 128
    assert DenseEmbedder(shapes, 64).input_size == 64
