"""CoDet's concept groups: captions name concepts by whole words (synonyms, plurals), and every
drawn group's images all name its concept."""

import pytest
import torch

from ovdet.data.captions import CaptionedImage
from ovdet.errors import OvdetError
from ovdet.methods.codet.concepts import ConceptIndex
from ovdet.types import Vocabulary

VOCAB = Vocabulary(("star", "ring", "half circle", "circle"), synonyms=((), ("donut",), (), ()))


def _items(*captions):
    return [CaptionedImage(i, f"{i}.png", (c,)) for i, c in enumerate(captions)]


def test_concepts_are_read_by_whole_words_synonyms_and_plurals():
    index = ConceptIndex.build(
        _items(
            "two stars and a donut",  # plural, synonym
            "a half circle",  # the longer name, not also "circle"
            "a starfish and a circles pattern",  # "starfish" is not a star
            "nothing here",
        ),
        VOCAB,
    )
    assert index.labels == ((0, 1), (2,), (3,), ())
    assert index.images_of == {0: (0,), 1: (0,), 2: (1,), 3: (2,)}


def test_every_group_shares_its_concept_and_holds_distinct_images():
    captions = ["a star"] * 5 + ["a ring and a star"] * 3 + ["a circle"] * 2 + ["a ring"]
    index = ConceptIndex.build(_items(*captions), VOCAB)
    assert index.groupable(4) == [0, 1]  # star: 8 images, ring: 4, circle: 2
    g = torch.Generator().manual_seed(0)
    drawn = []
    for _ in range(200):
        c, images = index.sample_group(4, g)
        assert len(set(images)) == 4 and all(c in index.labels[i] for i in images)
        drawn.append(c)
    # drawn uniformly over the groupable concepts: star about 100 of 200 times (a draw weighted by
    # images, 8 against 4, would give about 133; the band is 2.8 standard deviations wide)
    assert set(drawn) == {0, 1} and 80 <= drawn.count(0) <= 120, drawn.count(0)


def test_no_groupable_concept_is_one_clear_error():
    index = ConceptIndex.build(_items("a star", "a star", "a ring"), VOCAB)
    with pytest.raises(OvdetError, match="no concept is named by 3 captioned images .at most 2."):
        index.sample_group(3, torch.Generator())
