"""Which region each pseudo-region rule picks, on one trained CoDet checkpoint's embeddings.

For the reproduction's fixed groups (`experiments.codet.fixed_groups`: 20 per groupable
det-captions concept, the same draw as `ovdet shapes reproduce-codet`'s hit rate), the share of
queries whose chosen region overlaps an object of the group's concept at IoU >= 0.5
(det-captions' oracle boxes), for:
- the checkpoint's own Phi (its `phi_input`, with and without text guidance);
- the parameter-free best-match rule, with and without text guidance;
- max-score (the region most similar to the concept's text);
- the oracle: some region of the query holds the concept (the ceiling of every rule).
Every rule reads the same embeddings, so the differences are the rules', not the trainings'.
Also printed per rule: the mean weight p of the chosen region (1 for the one-hot baselines; a
soft rule's prototype mixes in the rest).
Also printed: how much the concepts' text embeddings share (what text guidance weighs by).

    python benchmarks/codet_hits.py --model runs/shapes-codet/CoDet [--data data/shapes]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ovdet.experiments.codet import CaptionSplit, fixed_groups, load_phi
from ovdet.experiments.vild import FineTuneWorld
from ovdet.methods.codet.cooccur import region_weights, text_guidance
from ovdet.methods.codet.train import CoDetTrainConfig
from ovdet.methods.vild.detector import load_detector
from ovdet.models.loader import load_model
from ovdet.vocab.parse import vocabulary_from_categories

RULES = (
    ("Phi, text guidance", "codet", True),
    ("Phi, no text guidance", "codet", False),
    ("parameter-free, text guidance", "parameter-free", True),
    ("parameter-free, no text guidance", "parameter-free", False),
    ("max-score", "max-score", True),
)


def text_overlap(text: torch.Tensor, top: float = 0.1) -> dict[str, float]:
    """(C, D) concept text embeddings -> their mean pairwise cosine and how often one concept's
    top `top` share of channels by text-guidance weight |t_c| is also another's (and chance)."""
    t = torch.nn.functional.normalize(text.float(), dim=-1)
    c, d = t.shape
    k = max(1, round(top * d))
    tops = [set(text_guidance(x).topk(k).indices.tolist()) for x in t]
    pairs = [(i, j) for i in range(c) for j in range(c) if i != j]
    return {
        "mean pairwise cos": float(((t @ t.t()).sum() - c) / len(pairs)),
        "top-channel overlap": sum(len(tops[i] & tops[j]) for i, j in pairs) / (k * len(pairs)),
        "chance": k / d,
    }


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a CoDet checkpoint folder")
    ap.add_argument("--data", default="data/shapes")
    ap.add_argument("--groups", type=int, default=20, help="fixed groups per concept")
    args = ap.parse_args()
    spec = json.loads((Path(args.model) / "spec.json").read_text())
    fields = CoDetTrainConfig.__dataclass_fields__
    saved = {"phi_input": "ordered"} | spec["codet"]  # checkpoints older than the field: ordered
    cfg = CoDetTrainConfig(**{k: v for k, v in saved.items() if k in fields})
    clip = load_model("shapes-clip")
    world = FineTuneWorld.load(Path(args.data), cfg.init, clip, 1, ())
    cats = sorted(world.train_gt["categories"], key=lambda c: c["id"])
    novel = {k for k, v in enumerate(world.novel.tolist()) if v}
    vocab = vocabulary_from_categories(cats)
    split = CaptionSplit.load(
        Path(args.data) / "det-captions", 2000, vocab, clip, world.spec["side"]
    )
    model, _ = load_detector(args.model)
    phi = load_phi(Path(args.model), cfg)
    hits: dict[tuple[str, str], list[float]] = {}
    for c, emb, boxes, ious in fixed_groups(model, cfg, split, args.groups):
        kind = "novel" if c in novel else "base"
        rows = torch.arange(len(ious))
        for name, method, guided in RULES:
            p = region_weights(method, emb, boxes, world.text[c], phi, guided)
            h = hits.setdefault((name, kind), [0, 0, 0.0])
            h[0] += int((ious[rows, p.argmax(-1)] >= 0.5).sum())
            h[1] += len(ious)
            h[2] += float(p.amax(-1).sum())
        h = hits.setdefault(("oracle (some region holds it)", kind), [0, 0, float("nan")])
        h[0] += int((ious.amax(-1) >= 0.5).sum())
        h[1] += len(ious)
    print("concept text embeddings:", text_overlap(world.text))
    print(f"{args.model} ({cfg.phi_input} Phi input): hit rate (%)")
    print(f"{'rule':<36}{'novel':>8}{'base':>8}{'top p':>8}")
    for name in dict.fromkeys(n for n, _ in hits):
        novel_h, base_h = (hits[(name, k)] for k in ("novel", "base"))
        top = (novel_h[2] + base_h[2]) / (novel_h[1] + base_h[1])
        print(
            f"{name:<36}{100 * novel_h[0] / novel_h[1]:8.1f}{100 * base_h[0] / base_h[1]:8.1f}"
            f"{top:8.2f}"
        )


if __name__ == "__main__":
    main()
