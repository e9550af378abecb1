"""Presets: every bundled one resolves to a configuration its trainer accepts; options typed after
the preset override it; --print-config prints what a command line resolves to."""

import json

import pytest

from ovdet.cli.main import build_parser, main
from ovdet.cli.options import dataclass_from_args
from ovdet.cli.presets import expand_preset, preset_names


def _config_class(command):
    from ovdet.methods.codet.train import CoDetTrainConfig
    from ovdet.methods.rkd.train import RKDTrainConfig
    from ovdet.methods.vild.train import ViLDTrainConfig

    return {"vild": ViLDTrainConfig, "rkd": RKDTrainConfig, "codet": CoDetTrainConfig}[command]


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds_its_trainers_config(name):
    command = json.loads(open(f"src/ovdet/resources/presets/{name}.json").read())["command"]
    argv, preset = expand_preset(
        ["train", command, "--preset", name, "--gt", "g", "--images", "i", "--out", "o"]
        + (["--captions", "c"] if command == "codet" else [])
    )
    args = build_parser().parse_args(argv)
    cfg = dataclass_from_args(_config_class(command), args)  # the trainer's own checks pass
    assert preset["differs"] and preset["description"]
    if name == "vild-r50-fpn-lvis":
        assert cfg.backbone == "microsoft/resnet-50" and cfg.side == 1024 and cfg.lsj
        assert args.mask and args.novel == "lvis" and cfg.sampling == "repeat-factor"
    if name == "vild-text-r50-c4-coco-ovd":  # detectron2's 800 / 1333, grouped
        assert cfg.neck == "c4" and (cfg.short_side, cfg.side) == (800, 1333)
        assert cfg.aspect_groups and not cfg.lsj and args.image_weight == 0


def test_typed_options_override_the_preset_and_print_config(capsys):
    assert main(["train", "vild", "--preset", "vild-r50-fpn-lvis", "--side", "800", "--no-lsj",
                 "--print-config"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed["side"] == 800 and printed["lsj"] is False and printed["flip"] is True
    assert printed["gt"] == "<required>" and "long LSJ schedule" in printed["preset"]["differs"]
    assert main(["train", "rkd", "--preset", "vild-r50-fpn-lvis", "--print-config"]) == 2
    assert "is for `ovdet train vild`, not 'rkd'" in capsys.readouterr().err
    assert main(["train", "vild", "--preset", "nope", "--gt", "x"]) == 2
    assert "bundled: codet-r50-fpn-lvis" in capsys.readouterr().err
