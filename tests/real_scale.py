"""The real-size code path's shared run: a tiny random transformers ResNet (saved and re-loaded
offline) with an FPN and a mask head, ViLD-text trained at 256 px on a shapes world; 0 and
`STEPS` steps. Built once per test run (`fpn_run` in tests/methods/conftest.py); ViLD's test
measures it, RKD's and CoDet's fine-tune from it."""

import json

from tiny_backbones import save_tiny_backbone

from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.methods.vild.model import ViLDConfig
from ovdet.methods.vild.train import ViLDTrainConfig, train_vild
from ovdet.models.loader import load_model

STEPS = 150


def fpn_config(backbone, **kw) -> ViLDTrainConfig:
    return ViLDTrainConfig(
        **{
            "steps": STEPS,
            "batch_size": 2,
            "side": 256,
            "warmup": 10,
            "lr": 2e-3,
            "checkpoint_every": STEPS,
            "backbone": str(backbone),
            "templates": "single",
            "freeze_at": 0,
            "fpn_channels": 32,
        }
        | kw
    )


def build_fpn_runs(root) -> None:
    generate_world(
        root / "w",
        WorldConfig(
            seed=3,
            captions=1,
            det_train=100,
            det_val=20,
            det_style=0,
            det_captions=24,
            det_val_uniform=0,
            det_captions_companion=0,
        ),
    )
    save_tiny_backbone(root / "resnet", "resnet")
    gt = json.loads((root / "w" / "det-train" / "annotations.json").read_text())
    clip = load_model("shapes-clip")
    vild = ViLDConfig(
        embed_dim=clip.embed_dim, image_weight=0.0, hidden=128, mask=True, mask_channels=32
    )
    for steps in (0, STEPS):
        cfg = fpn_config(root / "resnet", steps=steps, checkpoint_every=max(1, steps))
        args = (gt, root / "w" / "det-train", root / f"vild-{steps}", clip, "shapes-clip")
        train_vild(*args, gt["ovd"]["base"], vild, cfg)


def training_set(root):
    """The shared run's det-train annotations, the shapes CLIP and the vocabulary of its
    categories (what RKD's and CoDet's fine-tuning tests start from)."""
    from ovdet.vocab.parse import vocabulary_from_categories

    gt = json.loads((root / "w" / "det-train" / "annotations.json").read_text())
    vocab = vocabulary_from_categories(sorted(gt["categories"], key=lambda c: c["id"]))
    return gt, load_model("shapes-clip"), vocab
