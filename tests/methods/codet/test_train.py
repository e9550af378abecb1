"""CoDet's trainer: a killed run resumes exactly (Phi included), the checkpoint detects through
the ViLD loaders, the control row trains no caption batch, and the CLI trains on user files
with one-line errors for bad ones."""

import json

import pytest
import torch
from resume import assert_resumes
from safetensors.torch import load_file

from ovdet.data.captions import CaptionDataset, load_captions
from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.errors import OvdetError
from ovdet.methods.codet.concepts import ConceptIndex
from ovdet.methods.codet.train import CoDetTrainConfig, image_regions, train_codet
from ovdet.methods.vild.detector import ViLDDetector
from ovdet.models.loader import load_model
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories

INIT = "shapes-vild-text"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("codet")
    world = generate_world(
        root / "w",
        WorldConfig(
            seed=9,
            captions=0,
            det_train=10,
            det_val=1,
            det_style=0,
            det_captions=16,
            det_val_uniform=0,
            det_captions_companion=0,
        ),
    )
    gt = json.loads((world / "det-train" / "annotations.json").read_text())
    clip = load_model("shapes-clip")
    vocab = vocabulary_from_categories(sorted(gt["categories"], key=lambda c: c["id"]))
    items = load_captions(world / "det-captions" / "captions.json")
    return {
        "gt": gt,
        "world": world,
        "clip": clip,
        "captions": CaptionDataset(items, world / "det-captions", 128),
        "concepts": ConceptIndex.build(items, vocab),
        "concept_text": embed_vocabulary(clip, vocab, "ensemble").clone(),
        "caption_text": clip.encode_text([i.captions[0] for i in items]).clone(),
    }


def run(setup, out, stop=None, **kw):
    cfg = CoDetTrainConfig(
        init=INIT,
        **{"steps": 6, "batch_size": 2, "group_size": 2, "proposals": 4, "warmup": 1}
        | {"checkpoint_every": 2}
        | kw,
    )
    keys = ("captions", "concepts", "concept_text", "caption_text")
    return train_codet(
        setup["gt"],
        setup["world"] / "det-train",
        out,
        cfg,
        *(setup[k] for k in keys),
        stop=stop,
        clip=setup["clip"],
    )


def test_resume_after_a_kill_equals_an_uninterrupted_run(setup, tmp_path):
    # killed after a caption batch
    resumed = assert_resumes(lambda out, stop: run(setup, out, stop), tmp_path, 6, kill_at=3)
    assert any(k.startswith("aux.phi.") for k in load_file(resumed / "model.safetensors"))
    with pytest.raises(OvdetError, match="another configuration"):
        run(setup, resumed, pseudo="max-size")


def test_caption_batches_train_phi_and_the_control_trains_none(setup, tmp_path):
    codet = load_file(run(setup, tmp_path / "c", steps=4) / "model.safetensors")
    control = load_file(
        run(setup, tmp_path / "v", steps=4, caption_weight=0.0) / "model.safetensors"
    )
    again = load_file(
        run(setup, tmp_path / "v2", steps=4, caption_weight=0.0) / "model.safetensors"
    )
    phi = "aux.phi.net.2.weight"
    assert torch.equal(control[phi], again[phi])  # untouched: the seed's initial Phi
    assert not torch.equal(codet[phi], control[phi])  # trained through the region-word loss
    annealed = load_file(
        run(setup, tmp_path / "a", steps=4, prototype="anneal") / "model.safetensors"
    )
    assert not torch.equal(annealed[phi], control[phi])  # Phi learns under a hardening prototype
    # its caption batches (steps 1 and 3 of 4) are a third and fully one-hot: other head weights
    assert any(not torch.equal(annealed[k], codet[k]) for k in codet if not k.startswith("aux."))
    spec = json.loads((tmp_path / "c" / "spec.json").read_text())
    assert spec["kind"] == "codet" and spec["codet"]["image_caption"]


def test_checkpoint_detects_any_vocabulary(setup, tmp_path):
    from ovdet.api import checkpoint_kind
    from ovdet.io.images import load_image
    from ovdet.types import Vocabulary

    folder = run(setup, tmp_path / "d", steps=2)
    assert checkpoint_kind(str(folder)) == "vild"  # the ViLD family: `ovdet detect` loads it
    detector = ViLDDetector(folder, text_cache=None)
    image = load_image(setup["world"] / "det-train" / "images" / "000000.png")
    regions = detector.detect(image, Vocabulary(("star", "ring", "bolt")))
    assert len(regions) and regions.labels.max() < 3


def test_image_regions_pad_with_the_whole_image():
    props = torch.tensor([[1.0, 1, 5, 5], [2, 2, 8, 8]])
    out = image_regions(props, (60, 80), 3)
    whole = torch.tensor([0.0, 0, 80, 60])
    assert out.shape == (4, 4) and torch.equal(out[:2], props)
    assert torch.equal(out[2], whole) and torch.equal(out[3], whole)


def test_cli_trains_on_captions_and_refuses_bad_input(setup, tmp_path, capsys):
    from ovdet.cli.main import main

    world = setup["world"]
    args = [
        "train", "codet",
        "--gt", str(world / "det-train" / "annotations.json"),
        "--images", str(world / "det-train"),
        "--captions", str(world / "det-captions" / "captions.json"),
        "--init", INIT,
        "--out", str(tmp_path / "run"),
        "--steps", "2",
        "--batch-size", "2",
        "--group-size", "2",
        "--proposals", "4",
    ]  # fmt: skip
    assert main(args) == 0
    spec = json.loads((tmp_path / "run" / "spec.json").read_text())
    assert spec["codet"]["steps"] == 2 and spec["codet"]["group_size"] == 2
    capsys.readouterr()
    cases = [
        ("--captions", str(tmp_path / "missing.json"), "missing.json"),
        ("--group-size", "1", "group-size must be >= 2"),
        ("--pseudo", "biggest", "invalid choice"),
        ("--prototype", "median", "invalid choice"),
        ("--concepts", "zebra, giraffe", "no concept is named by 2 captioned images"),
        ("--concepts", "", "vocabulary is empty"),  # given empty: refused, not the default
        ("--concepts", " , ", "vocabulary is empty"),
    ]
    for flag, value, message in cases:
        bad = list(args)
        if flag in bad:
            bad[bad.index(flag) + 1] = value
        else:
            bad += [flag, value]
        if flag in ("--pseudo", "--prototype"):  # argparse's own refusal
            with pytest.raises(SystemExit):
                main(bad)
        else:
            assert main(bad) == 2, flag
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (flag, err)


def test_reproduction_rows_are_chosen_by_name():
    from ovdet.experiments.codet import ROWS, CoDetExperiment

    assert CoDetExperiment().row_names() == list(ROWS)
    assert CoDetExperiment(rows=" CoDet, max-score").row_names() == ["CoDet", "max-score"]
    with pytest.raises(Exception, match=r"rows must name rows of .*got \['CoDet \(typo\)'\]"):
        CoDetExperiment(rows="CoDet (typo)")
