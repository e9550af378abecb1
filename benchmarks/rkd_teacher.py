"""How much RKD's teacher knows that its student does not, in the shapes world.

Distillation can only add the novel-class knowledge the teacher has beyond the student. This
measures both on det-val-uniform (LVIS protocol, AP_r = novel AP):
- the teacher as a detector: the init's RPN proposals named by the CLIP (`--clip`, default
  `shapes-clip`) on their 1x crops
  (RKD's teacher embedding; R-CNN style, as ViLD's "CLIP on cropped regions" row);
- both on the ground-truth boxes: top-1 accuracy over all classes on novel and base boxes (the
  teacher's 1x crops; each student's region embeddings), and for a student the share of novel
  boxes its learned background outscores every class on (what it calls background);
- localisation: each true box shifted sideways by half its width (IoU 1/3 with it), and the
  share of novel boxes whose true class scores at least as high on the shifted box as on the
  true one (the teacher's class softmax; a student's detection rule, its background included):
  a detector that ranks loose boxes as high as tight ones loses AP.

    r=runs/shapes-rkd
    python benchmarks/rkd_teacher.py --data data/shapes \\
        --students "$r/ViLD-text,$r/+ L1 (stand-in),$r/RKD (L1 + IRM)"

Students are checkpoint folders, e.g. the rows of `ovdet shapes reproduce-rkd`; one JSON line
per row is printed and appended to `--out`; `--boxes-only` skips the detection rows (AP).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ovdet.data.coco import letterbox
from ovdet.eval.recognition import evaluate_detector
from ovdet.experiments.vild import FineTuneWorld, clip_on_crops
from ovdet.io.images import load_image
from ovdet.methods.vild.detector import load_detector
from ovdet.models.loader import load_model
from ovdet.ops.boxes import xywh_to_xyxy
from ovdet.recognize.core import class_probabilities
from ovdet.recognize.crop import CropEmbedder

SPLIT = "det-val-uniform"


def gt_boxes(gt: dict[str, Any], images: Path):
    """Yield (image, (N, 4) xyxy, (N,) class indices into the sorted category ids)."""
    index = {c: i for i, c in enumerate(sorted(c["id"] for c in gt["categories"]))}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for im in gt["images"]:
        anns = by_image.get(im["id"], [])
        if anns:
            xyxy = xywh_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32))
            labels = torch.tensor([index[a["category_id"]] for a in anns])
            yield load_image(images / im["file_name"]), xyxy, labels


@torch.no_grad()
def box_accuracy(world: FineTuneWorld, clip: Any, student: str | None) -> dict[str, float]:
    """Top-1 over all classes on det-val-uniform's true boxes (novel and base), by the teacher's
    1x crops (`student` None) or a checkpoint's region embeddings (with its background's share
    of the novel boxes)."""
    gt, images = world.splits[SPLIT]
    crops = CropEmbedder(clip, scales=(1.0,))
    model, spec = load_detector(student) if student else (None, None)
    hits: dict[str, list[torch.Tensor]] = {"novel": [], "base": []}
    background, loose = [], []
    for image, xyxy, labels in gt_boxes(gt, images):
        boxes = torch.cat([xyxy, shifted(xyxy, image.shape[-1])])
        if model is None:
            emb = crops.embed(image, boxes).cpu()
            p = class_probabilities(emb, world.text, clip.logit_scale)
            top1 = p[: len(xyxy)].argmax(-1)
        else:
            pixels, box = letterbox(image, spec["side"])
            emb, _ = model.text_head(model.backbone(pixels), [box.boxes(boxes)])
            top1 = model.class_probabilities(emb[: len(xyxy)], world.text, False).argmax(-1)
            p = model.class_probabilities(emb, world.text)  # the detection rule
            if model.config.classification == "softmax":
                logits = model.classifier(emb[: len(xyxy)], world.text, background=True)
                background.append((logits.argmax(-1) == 0)[world.novel[labels]])
        novel = world.novel[labels]
        n = torch.arange(len(labels))
        loose.append((p[n + len(labels), labels] >= p[n, labels])[novel])
        hits["novel"].append((top1 == labels)[novel])
        hits["base"].append((top1 == labels)[~novel])
    row = {f"{k} top-1": percent(v) for k, v in hits.items()}
    if background:
        row["novel called background"] = percent(background)
    row["novel: shifted box scores >= true box"] = percent(loose)
    return row


def percent(flags: list[torch.Tensor]) -> float:
    return round(100 * float(torch.cat(flags).float().mean()), 1)


def shifted(xyxy: torch.Tensor, width: int) -> torch.Tensor:
    """(N, 4) boxes -> each moved sideways by half its width (right, or left where it would leave
    the image): IoU 1/3 with the original, unless clipped."""
    w = xyxy[:, 2] - xyxy[:, 0]
    dx = torch.where(xyxy[:, 2] + w / 2 <= width, w / 2, -w / 2)
    out = xyxy + torch.stack([dx, torch.zeros_like(dx), dx, torch.zeros_like(dx)], -1)
    out[:, 0::2] = out[:, 0::2].clamp(0, width)  # a box wider than 2/3 of the image: clipped
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/shapes")
    ap.add_argument("--init", default="shapes-vild-text", help="whose RPN proposes for the teacher")
    ap.add_argument("--students", default="", help="comma-separated checkpoint folders")
    ap.add_argument("--out", default="runs/rkd-teacher.jsonl")
    ap.add_argument("--boxes-only", action="store_true", help="skip the detection rows (AP)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--clip", default="shapes-clip", help="the teacher (and the text) CLIP")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clip = load_model(args.clip)
    world = FineTuneWorld.load(Path(args.data), args.init, clip, 1, (SPLIT,))
    proposer, spec = load_detector(args.init)
    teacher = clip_on_crops(proposer, spec, clip, world.text, scales=(1.0,))
    row = {"row": "teacher: CLIP on 1x crops of the RPN's proposals"}
    if not args.boxes_only:
        row |= evaluate_detector(*world.splits[SPLIT], teacher, world.ids)
    rows = [row | box_accuracy(world, clip, None)]
    print(json.dumps(rows[0]), flush=True)
    for folder in filter(None, args.students.split(",")):
        row = {"row": folder}
        if not args.boxes_only:
            row |= world.evaluate(Path(folder))[SPLIT]
        rows.append(row | box_accuracy(world, clip, folder))
        print(json.dumps(rows[-1]), flush=True)
    with open(args.out, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
