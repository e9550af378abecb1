"""Digests of short shapes-world runs, to compare two commits bit for bit: ViLD-text (shapes
backbone, defaults, 30 steps), CoDet from the bundled shapes-vild-text (20 steps) and the bundled
shapes-vild's detections on one image, SAM2CLIP (rendered scenes, 20 steps) and CLIP2SAM on the
bundled shapes-sam2clip (10 steps). A change that must leave the shapes world's figures
unchanged prints the same lines before and after:

    git worktree add /tmp/old REV
    PYTHONPATH=/tmp/old/src python scripts/weights_digest.py /tmp/digest-old
    python scripts/weights_digest.py /tmp/digest-new
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from ovdet.data.captions import CaptionDataset, load_captions
from ovdet.data.shapes.generate import WorldConfig, generate_world
from ovdet.io.images import load_image
from ovdet.methods.codet.concepts import ConceptIndex
from ovdet.methods.codet.train import CoDetTrainConfig, train_codet
from ovdet.methods.vild.detector import detect_image, load_detector
from ovdet.methods.vild.model import ViLDConfig
from ovdet.methods.vild.train import ViLDTrainConfig, train_vild
from ovdet.models.loader import load_model
from ovdet.vocab.embed import embed_vocabulary
from ovdet.vocab.parse import vocabulary_from_categories


def digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def weights_digest(folder: Path) -> str:
    state = load_file(folder / "model.safetensors")
    return digest(*(state[k] for k in sorted(state)))


def main() -> None:
    torch.set_num_threads(1)
    out = Path(sys.argv[1])
    world = generate_world(
        out / "w",
        WorldConfig(
            seed=12,
            captions=0,
            det_train=40,
            det_val=1,
            det_style=0,
            det_captions=16,
            det_val_uniform=0,
            det_captions_companion=0,
        ),
    )
    gt = json.loads((world / "det-train" / "annotations.json").read_text())
    clip = load_model("shapes-clip")
    vild = ViLDConfig(embed_dim=clip.embed_dim, image_weight=0.0)
    cfg = ViLDTrainConfig(steps=30, checkpoint_every=30, warmup=5)
    base = gt["ovd"]["base"]
    folder = train_vild(gt, world / "det-train", out / "vild", clip, "shapes-clip", base, vild, cfg)
    print("vild-text", weights_digest(folder))

    vocab = vocabulary_from_categories(sorted(gt["categories"], key=lambda c: c["id"]))
    items = load_captions(world / "det-captions" / "captions.json")
    cfg = CoDetTrainConfig(
        steps=20, checkpoint_every=20, warmup=2, batch_size=2, group_size=2, proposals=4
    )
    folder = train_codet(
        gt,
        world / "det-train",
        out / "codet",
        cfg,
        CaptionDataset(items, world / "det-captions", 128),
        ConceptIndex.build(items, vocab),
        embed_vocabulary(clip, vocab, "ensemble").clone(),
        clip.encode_text([i.captions[0] for i in items]).clone(),
        clip=clip,
    )
    print("codet", weights_digest(folder))

    model, spec = load_detector("shapes-vild")
    image = load_image(sorted((world / "det-train" / "images").glob("*.png"))[0])
    found = detect_image(model, spec, image, embed_vocabulary(clip, vocab, "ensemble"))
    print("detect", digest(found.xyxy, found.scores, found.labels.float()), len(found))

    from ovdet.methods.ovsam.clip2sam import Clip2SamConfig, train_clip2sam
    from ovdet.methods.ovsam.sam2clip import Sam2ClipConfig, train_sam2clip

    s2c = Sam2ClipConfig(steps=20, warmup=5, val_scenes=8, checkpoint_every=0)
    train_sam2clip(out / "sam2clip", s2c, progress=False)
    print("sam2clip", weights_digest(out / "sam2clip"))
    c2s = Clip2SamConfig(steps=10, warmup=2, batch_size=4, checkpoint_every=0)
    print("clip2sam", weights_digest(train_clip2sam(out / "clip2sam", c2s, progress=False)))


if __name__ == "__main__":
    main()
