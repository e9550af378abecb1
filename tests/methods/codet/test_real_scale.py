"""CoDet on the real-size code path: fine-tuning the shared FPN ViLD-text run
(tests/real_scale.py) on captioned images, the region-word and image-caption losses fall (the
loss log's first quarter of caption batches against its last)."""

import json

import pytest
from real_scale import STEPS, training_set

from ovdet.data.captions import CaptionDataset, load_captions
from ovdet.methods.codet.concepts import ConceptIndex
from ovdet.methods.codet.train import CoDetTrainConfig, train_codet
from ovdet.methods.vild.detector import load_detector
from ovdet.vocab.embed import embed_vocabulary


def quarters(folder, name) -> tuple[float, float]:
    """Mean of `name` over the first and the last quarter of the steps that had it."""
    rows = [json.loads(x) for x in (folder / "losses.jsonl").read_text().splitlines()]
    values = [r[name] for r in rows if name in r]
    n = max(1, len(values) // 4)
    return sum(values[:n]) / n, sum(values[-n:]) / n


@pytest.mark.slow(seconds=15)
def test_codet_losses_fall_on_the_fpn_path(fpn_run, tmp_path):
    root, folders = fpn_run
    gt, clip, vocab = training_set(root)
    items = load_captions(root / "w" / "det-captions" / "captions.json")
    cfg = CoDetTrainConfig(
        init=str(folders[STEPS]),
        steps=200,
        batch_size=2,
        group_size=2,
        proposals=8,
        warmup=5,
        checkpoint_every=200,
        lr=1e-3,
    )
    folder = train_codet(
        gt,
        root / "w" / "det-train",
        tmp_path / "codet",
        cfg,
        CaptionDataset(items, root / "w" / "det-captions", 256),
        ConceptIndex.build(items, vocab),
        embed_vocabulary(clip, vocab, "single").clone(),
        clip.encode_text([i.captions[0] for i in items]).clone(),
        clip=clip,
    )
    region_word, image_caption = quarters(folder, "region_word"), quarters(folder, "image_caption")
    # measured: region-word 0.371 -> 0.302, image-caption 0.188 -> 0.063 (100 caption batches)
    assert region_word[1] < 0.9 * region_word[0], region_word
    assert image_caption[1] < 0.6 * image_caption[0], image_caption
    _, tuned = load_detector(folder)
    assert tuned["backbone"] == load_detector(folders[STEPS])[1]["backbone"]
