"""`ovdet export --model M --vocab V --format onnx [--out model.onnx] [--nms]`: a detector with
its vocabulary folded in, for onnxruntime (`ovdet detect --model model.onnx` runs it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ovdet.cli.common import add_device_arg
from ovdet.errors import OvdetError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a ViLD / RKD / CoDet checkpoint with a fixed vocabulary"
    )
    p.add_argument(
        "--model", required=True, help="ViLD-family checkpoint (folder, hub repo, bundled)"
    )
    p.add_argument(
        "--vocab", required=True, help='the fixed class names: "cat, traffic cone", a file, "coco"'
    )
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", default=None, help="the file to write (default: MODEL.onnx here)")
    p.add_argument(
        "--nms",
        action="store_true",
        help="put ViLD's selection and per-class NMS in the graph (ONNX NonMaxSuppression); "
        "default: the graph gives every proposal's box and class scores, NMS is the caller's",
    )
    p.add_argument(
        "--check",
        default=None,
        metavar="IMAGE",
        help="after export, run IMAGE through onnxruntime and the torch detector and compare",
    )
    add_device_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ovdet.api import checkpoint_kind, load
    from ovdet.methods.vild.export import compare, export_onnx
    from ovdet.methods.vild.onnx_detector import OnnxDetector
    from ovdet.vocab.parse import parse_vocabulary

    vocab = parse_vocabulary(args.vocab)
    kind = checkpoint_kind(args.model)
    if kind != "vild":
        raise OvdetError(
            f"--model {args.model} is a {kind} model; ovdet export takes a ViLD-family "
            "checkpoint (ovdet train vild / rkd / codet, or shapes-vild)"
        )
    out = Path(args.out or f"{Path(str(args.model).rstrip('/')).name}.onnx")
    if out.suffix.lower() != ".onnx":
        raise OvdetError(f"--out must end in .onnx, got {str(out)!r}")
    console = Console(stderr=True)
    detector = load(args.model, device="cpu", text_cache=None)
    with console.status(f"tracing {args.model} to ONNX"):
        meta = export_onnx(detector, vocab, out, nms=args.nms, source=str(args.model))
    nms = "inside" if meta["nms"] else "left to the caller"
    console.print(
        f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): {len(meta['names'])} names, "
        f"input {meta['side']} px, NMS {nms}"
    )
    if args.check:
        n, box, score = compare(detector, OnnxDetector(out), args.check, vocab)
        console.print(
            f"onnxruntime vs torch on {args.check}: {n} detections scoring >= 0.001 agree in "
            f"order and class; boxes within {box:.2g} px, scores within {score:.2g}"
        )
    return 0
