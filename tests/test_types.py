import numpy as np
import pytest
import torch

from ovdet.errors import BoxError, VocabularyError
from ovdet.types import Regions, Vocabulary


def make(n=4, with_all=True):
    xyxy = torch.arange(n * 4, dtype=torch.float32).reshape(n, 4)
    xyxy[:, 2:] += 10
    kwargs = {}
    if with_all:
        kwargs = dict(
            scores=torch.linspace(0, 1, n),
            labels=torch.arange(n),
            masks=torch.zeros(n, 30, 40, dtype=torch.bool),
            embeddings=torch.randn(n, 8),
            data={"names": [f"r{i}" for i in range(n)], "class_scores": torch.rand(n, 3)},
        )
    return Regions(xyxy, (30, 40), **kwargs)


def test_indexing_returns_new_regions_with_every_field():
    r = make()
    high = r[r.scores > 0.5]
    assert len(high) == 2
    assert high.labels.tolist() == [2, 3]
    assert high.data["names"] == ["r2", "r3"]
    assert high.masks.shape == (2, 30, 40)
    assert r[1].labels.tolist() == [1]
    assert r[-1].data["names"] == ["r3"]
    assert r[torch.tensor([3, 0])].data["names"] == ["r3", "r0"]
    assert r[1:3].embeddings.shape == (2, 8)
    assert [x.labels.item() for x in r] == [0, 1, 2, 3]
    assert r[-4].data["names"] == ["r0"]
    assert r[np.int64(2)].data["names"] == r[torch.tensor(2)].data["names"] == ["r2"]
    for out_of_range in (4, -5):  # as a tensor would, not an empty result
        with pytest.raises(IndexError, match=f"index {out_of_range} is out of range for 4"):
            r[out_of_range]


def test_cat_and_area():
    r = make()
    both = Regions.cat([r, r[:2]])
    assert len(both) == 6 and both.data["names"][-1] == "r1"
    assert both.area.tolist()[:2] == [144.0, 144.0]  # [0, 1, 12, 13]
    with pytest.raises(ValueError, match="set in some parts only"):
        Regions.cat([make(), make(with_all=False)])
    with pytest.raises(ValueError, match="one image size"):
        Regions.cat([r, Regions(r.xyxy, (31, 40))])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(xyxy=torch.zeros(3, 5)), BoxError, r"shape \(N, 4\), got \(3, 5\)"),
        (dict(xyxy=torch.tensor([[0.0, 0, float("nan"), 1]])), BoxError, "non-finite"),
        (dict(scores=torch.zeros(2)), ValueError, r"scores must have shape \(3,\), got \(2,\)"),
        (dict(labels=torch.zeros(3, 1)), ValueError, "labels must have shape"),
        (dict(masks=torch.zeros(3, 10, 10)), ValueError, r"masks must have shape \(3, 30, 40\)"),
        (dict(embeddings=torch.zeros(2, 8)), ValueError, "embeddings must have shape"),
        (dict(data={"x": [1, 2]}), ValueError, r"data\['x'\] must have 3 rows"),
        (dict(scores=torch.tensor([0.1, float("nan"), 0.2])), ValueError, "NaN"),
        (dict(image_size=(0, 10)), ValueError, "image_size"),
    ],
)
def test_regions_validation(kwargs, error, message):
    base = dict(xyxy=torch.zeros(3, 4), image_size=(30, 40))
    with pytest.raises(error, match=message):
        Regions(**{**base, **kwargs})


def test_empty_regions():
    r = Regions(torch.zeros(0), (5, 5), scores=torch.zeros(0))
    assert len(r) == 0 and r.xyxy.shape == (0, 4)
    assert len(r[r.scores > 0]) == 0


def test_vocabulary():
    v = Vocabulary(("cat", " traffic   cone "), (("kitty",), ()), ("red",))
    assert v.names == ("cat", "traffic cone")
    assert v.all_names(0) == ("cat", "kitty")
    assert v.index("Traffic Cone") == 1
    assert v.subset([1]).names == ("traffic cone",)
    assert len(Vocabulary(("a",))) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (((),), "empty"),
        ((("cat", "Cat"),), "appears twice"),
        ((("cat", "  "),), "whitespace"),
        ((("cat", 3),), "must be a string"),
        ((("cat",), (("a",), ("b",))), "one entry per name"),
        ((("cat",), (), ("red", "red")), "duplicates"),
    ],
)
def test_vocabulary_errors(args, message):
    with pytest.raises(VocabularyError, match=message):
        Vocabulary(*args)
    with pytest.raises(VocabularyError, match="not in the vocabulary"):
        Vocabulary(("cat",)).index("dog")


def test_topk_labels_and_nms_by_hand():
    xyxy = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.7], [0.3, 0.6, 0.1]])
    regions = Regions(xyxy, (100, 100), data={"class_scores": scores})
    top2 = regions.topk_labels(2)
    assert top2.labels.tolist() == [0, 2, 1, 2, 1, 0]
    assert top2.scores.tolist() == pytest.approx([0.9, 0.5, 0.8, 0.7, 0.6, 0.3])
    assert top2.data["row"].tolist() == [0, 0, 1, 1, 2, 2]
    # rows 0 and 1 overlap at IoU 81/119 = 0.68: within label 2 the weaker (0.5) goes
    kept = top2.with_nms(0.5)
    assert sorted(zip(kept.data["row"].tolist(), kept.labels.tolist(), strict=True)) == [
        (0, 0),
        (1, 1),
        (1, 2),
        (2, 0),
        (2, 1),
    ]
    assert (kept.scores[:-1] >= kept.scores[1:]).all()
    # class-agnostic: rows 0 and 1 are one place (IoU 0.68), row 2 another; the best of each
    agnostic = top2.with_nms(0.5, class_agnostic=True)
    assert agnostic.data["row"].tolist() == [0, 2]
    assert agnostic.scores.tolist() == pytest.approx([0.9, 0.6])
    assert len(regions.topk_labels(10)) == 9  # k is capped at the number of classes


def test_replace_validates_like_construction():
    regions = Regions(torch.tensor([[0.0, 0, 1, 1]]), (4, 4))
    assert regions.replace(scores=torch.tensor([0.5])).scores.tolist() == [0.5]
    with pytest.raises(ValueError, match=r"scores must have shape \(1,\)"):
        regions.replace(scores=torch.tensor([0.5, 0.6]))
    with pytest.raises(TypeError, match="no field"):
        regions.replace(colour="red")


def test_novel_mask_is_case_insensitive_membership():
    vocab = Vocabulary(("Circle", "crescent", "star"))
    assert vocab.novel_mask(["circle", "STAR"]).tolist() == [False, True, False]


def test_a_string_where_a_sequence_belongs_is_refused_not_spelled_out():
    with pytest.raises(VocabularyError, match="names must be a sequence of strings"):
        Vocabulary("cat")
    with pytest.raises(VocabularyError, match="synonyms must hold one tuple"):
        Vocabulary(("cat", "dog"), ("kitty", ()))
    with pytest.raises(VocabularyError, match="attributes must be a sequence"):
        Vocabulary(("cat",), attributes="red")
    assert Vocabulary(["cat"], [["kitty"]], ["red"]).all_names(0) == ("cat", "kitty")


def test_float_casts_floating_fields_only():
    r = Regions(
        torch.zeros(2, 4, dtype=torch.bfloat16),
        (8, 8),
        scores=torch.ones(2, dtype=torch.bfloat16),
        labels=torch.tensor([0, 1]),
        masks=torch.zeros(2, 8, 8, dtype=torch.bool),
        data={"class_scores": torch.ones(2, 3, dtype=torch.float16), "name": ["a", "b"]},
    ).float()
    assert r.xyxy.dtype == r.scores.dtype == r.data["class_scores"].dtype == torch.float32
    assert r.labels.dtype == torch.int64 and r.masks.dtype == torch.bool
    assert r.data["name"] == ["a", "b"]
