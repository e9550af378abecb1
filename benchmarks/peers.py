"""ovdet against the detectors a user would run instead, side by side: seconds per image at real
sizes, random weights (the compute equals the real models'), one image, this machine.

Rows, each in its own process (peak memory is the row's own):
- vild-N: ovdet ViLD, ResNet-50 + FPN at 1024 px, a vocabulary of N names (5, 80, 1,203),
  its backbone fused and channels-last as `ViLDDetector` runs it (`--contiguous`: NCHW and
  unfused, for the before;
  `--precision bf16`: under autocast, as `ovdet detect --precision bf16`; `--compile`: the
  backbone through torch.compile, as `ovdet detect --compile`, and OWLv2's one-forward rows
  compiled whole, so the ratio stays like for like);
- owlv2-N: transformers' Owlv2ForObjectDetection (B/16 at 960 px), one forward with N queries;
- owlv2-pipeline: transformers' zero-shot-object-detection pipeline as users call it: it runs
  the whole model once per candidate label (image included). Timed at `--pipeline-labels`
  labels; its 80-label figure is 80 x the measured seconds per label (said in the table);
- gdino-N: transformers' GroundingDinoForObjectDetection (Swin-T + BERT-base, the tiny model) at
  800 x 1066: the names joined into prompts of at most 256 tokens, one forward per prompt. The
  seconds are (forwards) x (one forward at that prompt length, measured); prompts assume
  `--tokens-per-name` word pieces per name, its " ." included (no BERT vocabulary here);
- regionspot-100: ovdet RegionSpot (SAM ViT-B + CLIP ViT-B/16) naming 100 given boxes at
  640 x 480, with its SAM image encoder alone beside it (the goal's denominator);
- regionspot-everything: the same RegionSpot naming SAM's everything-mode proposals (a 32 x 32
  point grid, 64 points a batch; the random weights pass no quality filter, so the best 300
  are kept, the most a real image sends on): one call;
- ovsam-10: ovdet Open-Vocabulary SAM (SAM-B's prompt encoder and decoder on the SAM2CLIP adapter
  over CLIP ViT-B/16 at 1024 px, the CLIP2SAM head, frozen CLIP's region features) naming 10 box
  prompts with 80 names, loaded from checkpoint folders as a user's run is; SAM-B's encoder
  alone beside it (what feature-crop runs instead of the adapter);
- dense-300: ovdet's dense CLIP (ViT-B/16) naming 300 boxes of a 640 x 480 image.
Each row: seconds per image (median of 3 after a warm-up, unless said), GFLOPs of one image
(torch's FlopCounterMode; a multiply-add counts 2), achieved GFLOP/s as a share of the fp32
matmul peak measured at the start of this run, peak resident memory.

    python benchmarks/peers.py [--rows vild-80,...] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from timing import sync, timed  # benchmarks/timing.py

from ovdet.experiments.ovsam import gflops

ROWS = (
    "vild-5", "vild-80", "vild-1203",
    "owlv2-5", "owlv2-80", "owlv2-1203", "owlv2-pipeline",
    "gdino-5", "gdino-80", "gdino-1203",
    "regionspot-100", "regionspot-everything", "ovsam-10", "dense-300",
)  # fmt: skip
GDINO_TEXT_LIMIT = 256


def matmul_peak(device: str, n: int = 2048) -> float:
    """fp32 GFLOP/s of an n x n matmul (median of 5) on `device` with this process's threads."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def product() -> None:
        a @ b
        sync(device)

    return 2 * n**3 / timed(product, 5) / 1e9


# ---- rows -----------------------------------------------------------------------------------


def row_vild(args: argparse.Namespace, names: int) -> dict:
    from real_size import build_vild, resnet50  # benchmarks/real_size.py

    model = build_vild(resnet50(args.cache), 80, args.device).eval()
    if not args.contiguous:  # as ViLDDetector runs a transformers backbone: fused, channels-last
        from ovdet.methods.vild.detector import prepare_for_inference

        prepare_for_inference(model)
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(1, 3, 1024, 1024, generator=g).to(args.device)
    if not args.contiguous:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    text = torch.nn.functional.normalize(torch.randn(names, 512, generator=g), dim=-1)
    text = text.to(args.device)

    from ovdet.train.precision import Precision

    amp = Precision(args.precision, torch.device(args.device).type)

    @torch.inference_mode()
    def infer() -> None:
        with amp.autocast():
            model.detect(pixels, [(1024, 768)], text)
        sync(args.device)

    @torch.inference_mode()
    def backbone_pass() -> None:
        model.backbone(pixels)
        sync(args.device)

    flops = gflops(infer)  # counted eagerly (before any compiling)
    if args.compile:  # as ViLDDetector(compile=True): the backbone through inductor
        model.backbone.compile()
    backbone = timed(backbone_pass, 3)  # its warm-up call compiles
    return {"s": timed(infer, 3), "gflops": flops, "backbone_s": backbone}


def owlv2(args: argparse.Namespace):  # noqa: ANN201
    from transformers import Owlv2Config, Owlv2ForObjectDetection

    torch.manual_seed(0)
    config = Owlv2Config(vision_config={"image_size": 960, "patch_size": 16})
    return Owlv2ForObjectDetection(config).eval().to(args.device)


def row_owlv2(args: argparse.Namespace, queries: int) -> dict:
    model = owlv2(args)
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(1, 3, 960, 960, generator=g).to(args.device)
    ids = torch.randint(2, 1000, (queries, 16), generator=g).to(args.device)
    mask = torch.ones_like(ids)

    @torch.inference_mode()
    def forward() -> None:
        model(input_ids=ids, pixel_values=pixels, attention_mask=mask)
        sync(args.device)

    flops = gflops(forward)
    if args.compile:  # the whole model through inductor, compiled by the warm-up call
        model.compile()
    return {"s": timed(forward, 3), "gflops": flops}


def row_owlv2_pipeline(args: argparse.Namespace) -> dict:
    from PIL import Image
    from random_clip import build_random_clip  # tests/random_clip.py: a character tokenizer
    from transformers import Owlv2ImageProcessor, pipeline

    model = owlv2(args)
    _, tokenizer = build_random_clip("tiny")
    detector = pipeline(
        "zero-shot-object-detection",
        model=model,
        tokenizer=tokenizer,
        image_processor=Owlv2ImageProcessor(),
        device=torch.device(args.device),
    )
    g = torch.Generator().manual_seed(1)
    array = torch.randint(0, 256, (768, 1024, 3), dtype=torch.uint8, generator=g).numpy()
    image = Image.fromarray(array)
    labels = ["cat", "dog", "cone", "bus", "car", "cup", "hat", "bag"][: args.pipeline_labels]
    seconds = timed(lambda: detector(image, candidate_labels=labels), 1)
    per_label = seconds / len(labels)
    return {"s": 80 * per_label, "per_label_s": per_label, "labels_timed": len(labels)}


def gdino(args: argparse.Namespace):  # noqa: ANN201
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    torch.manual_seed(0)
    return GroundingDinoForObjectDetection(GroundingDinoConfig()).eval().to(args.device)


def prompt_lengths(names: int, per_name: int) -> list[int]:
    """Token counts of the prompts `names` names fill: [CLS] + names + [SEP] <= 256 each."""
    room = (GDINO_TEXT_LIMIT - 2) // per_name  # names per prompt
    full, rest = divmod(names, room)
    return [2 + room * per_name] * full + ([2 + rest * per_name] if rest else [])


def row_gdino(args: argparse.Namespace, names: int) -> dict:
    model = gdino(args)
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(1, 3, 800, 1066, generator=g).to(args.device)
    lengths = prompt_lengths(names, args.tokens_per_name)
    cost: dict[int, tuple[float, float]] = {}
    for length in sorted(set(lengths)):
        ids = torch.randint(1000, 30000, (1, length), generator=g).to(args.device)

        @torch.inference_mode()
        def forward(ids: torch.Tensor = ids) -> None:
            model(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids))
            sync(args.device)

        cost[length] = (timed(forward, 3), gflops(forward))
    return {
        "s": sum(cost[n][0] for n in lengths),
        "gflops": sum(cost[n][1] for n in lengths),
        "forwards": len(lengths),
    }


def row_regionspot(args: argparse.Namespace, boxes: int) -> dict:
    from random_clip import build_random_clip
    from recognize import random_boxes, random_sam  # benchmarks/recognize.py

    from ovdet.methods.regionspot.model import RegionSpot, RegionSpotConfig
    from ovdet.methods.regionspot.recognizer import FeatureExtractor
    from ovdet.models.clip import ClipModel
    from ovdet.models.sam import SamBackend

    sam = SamBackend(random_sam(), name="random SAM ViT-B")
    model, tokenizer = build_random_clip("vit-b16")
    clip = ClipModel(model, tokenizer, name="random ViT-B/16")
    features = FeatureExtractor(sam, clip)
    module = RegionSpot(RegionSpotConfig(token_dim=sam.token_dim, clip_dim=clip.embed_dim)).eval()
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8, generator=g)
    xyxy = random_boxes(boxes, 480, 640, g)

    @torch.inference_mode()
    def recognize() -> object:
        f = features(image, xyxy, sam.set_image(image))
        return module(
            f["tok_transformer"][None],
            (f["xyxy"] * f["norm"])[None],
            f["clip_map"].float()[None],
            f["clip_global"][None],
        )

    encoder = timed(lambda: sam.set_image(image), 3)
    return {"s": timed(recognize, 3), "gflops": gflops(recognize), "sam_encoder_s": encoder}


def row_everything(args: argparse.Namespace) -> dict:
    from random_clip import build_random_clip
    from recognize import random_sam  # benchmarks/recognize.py

    from ovdet.methods.regionspot.model import RegionSpot, RegionSpotConfig
    from ovdet.methods.regionspot.recognizer import FeatureExtractor
    from ovdet.models.clip import ClipModel
    from ovdet.models.sam import SamBackend
    from ovdet.models.sam_everything import EverythingConfig, everything

    sam = SamBackend(random_sam(), name="random SAM ViT-B")
    model, tokenizer = build_random_clip("vit-b16")
    clip = ClipModel(model, tokenizer, name="random ViT-B/16")
    features = FeatureExtractor(sam, clip)
    module = RegionSpot(RegionSpotConfig(token_dim=sam.token_dim, clip_dim=clip.embed_dim)).eval()
    image = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8)
    kept = []

    # random weights pass none of the quality filters: keep the best `max_proposals` (300)
    # instead, the most a real image can send on to RegionSpot
    cfg = EverythingConfig(iou_threshold=0.0, stability_threshold=0.0)

    @torch.inference_mode()
    def detect() -> object:
        state = sam.set_image(image)
        proposals = everything(sam, state, cfg)
        kept[:] = [len(proposals)]
        f = features(image, proposals.xyxy, state)
        return module(
            f["tok_transformer"][None],
            (f["xyxy"] * f["norm"])[None],
            f["clip_map"].float()[None],
            f["clip_global"][None],
        )

    encoder = timed(lambda: sam.set_image(image), 1)  # its warm-up call warms SAM for both
    start = time.perf_counter()
    detect()  # one call (minutes on a CPU): no warm-up of its own
    return {"s": time.perf_counter() - start, "sam_encoder_s": encoder, "proposals": kept[0]}


def ovsam_folders(root: Path) -> Path:
    """A random-weight Open-Vocabulary SAM at SAM-B / CLIP ViT-B/16 sizes, written as the
    trainers write their runs: SAM and CLIP folders, a SAM2CLIP run, a CLIP2SAM run."""
    from dataclasses import asdict

    from random_clip import save_random_clip
    from recognize import random_sam
    from safetensors.torch import save_file

    from ovdet.methods.ovsam.clip2sam import Clip2Sam, Clip2SamConfig, build_head
    from ovdet.methods.ovsam.sam2clip import Sam2ClipBackend, build_adapter
    from ovdet.models.loader import load_model
    from ovdet.models.sam import SamBackend

    if (root / "ovsam" / "spec.json").is_file():
        return root / "ovsam"
    random_sam().save_pretrained(root / "sam-b")
    save_random_clip(root / "clip-b16", "vit-b16")
    sam = SamBackend.from_pretrained(str(root / "sam-b"))
    clip = load_model(str(root / "clip-b16"))
    adapter = build_adapter(clip, sam.model, 1024, 2)
    s2c = {"kind": "sam2clip", "sam": str(root / "sam-b"), "clip": str(root / "clip-b16")}
    s2c |= {"size": 1024, "blocks": 2}
    (root / "sam2clip").mkdir(exist_ok=True)
    save_file(adapter.state_dict(), root / "sam2clip" / "model.safetensors")
    (root / "sam2clip" / "spec.json").write_text(json.dumps(s2c))
    cfg = asdict(Clip2SamConfig())
    head = build_head(Sam2ClipBackend(sam.model, clip, adapter), 1024, cfg)
    weights = {
        k: v.contiguous() for k, v in Clip2Sam(head, sam.model.mask_decoder).state_dict().items()
    }
    (root / "ovsam").mkdir(exist_ok=True)
    save_file(weights, root / "ovsam" / "model.safetensors")
    spec = {"kind": "ovsam", **cfg, "sam2clip": str(root / "sam2clip"), "templates": "single"}
    spec["base_names"] = [f"thing {i}" for i in range(40)]
    (root / "ovsam" / "spec.json").write_text(json.dumps(spec))
    return root / "ovsam"


def row_ovsam(args: argparse.Namespace, prompts: int) -> dict:
    from recognize import random_boxes

    from ovdet.methods.ovsam.clip2sam import OVSam
    from ovdet.vocab.parse import parse_vocabulary

    model = OVSam(ovsam_folders(args.cache), args.device, text_cache=None)
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8, generator=g)
    xyxy = random_boxes(prompts, 480, 640, g)
    vocab = parse_vocabulary(", ".join(f"thing {i}" for i in range(80)))

    def recognize() -> object:
        return model.recognize_regions(image, xyxy, vocab)

    def two_passes() -> object:  # before: the head ran CLIP at SAM's side a second time
        masks = model.backend.predict_boxes(model.backend.set_image(image), xyxy).masks
        return masks, model.probabilities(image, xyxy, vocab)

    from ovdet.models.sam import SamBackend

    sam = SamBackend.from_pretrained(str(args.cache / "sam-b"))
    encoder = timed(lambda: sam.set_image(image), 3)
    out = {"s": timed(recognize, 3), "gflops": gflops(recognize), "sam_encoder_s": encoder}
    return out | {"two_passes_s": timed(two_passes, 3)}


def row_dense(args: argparse.Namespace, boxes: int) -> dict:
    from random_clip import build_random_clip
    from recognize import random_boxes

    from ovdet.models.clip import ClipModel
    from ovdet.recognize.dense import DenseEmbedder

    model, tokenizer = build_random_clip("vit-b16")
    dense = DenseEmbedder(ClipModel(model, tokenizer, name="random ViT-B/16"))
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8, generator=g)
    xyxy = random_boxes(boxes, 480, 640, g)

    def embed() -> object:
        return dense.embed(image, xyxy)

    return {"s": timed(embed, 3), "gflops": gflops(embed)}


def run_row(args: argparse.Namespace) -> dict:
    kind, _, value = args.row.partition("-")
    if kind == "vild":
        out = row_vild(args, int(value))
    elif args.row == "owlv2-pipeline":
        out = row_owlv2_pipeline(args)
    elif kind == "owlv2":
        out = row_owlv2(args, int(value))
    elif kind == "gdino":
        out = row_gdino(args, int(value))
    elif args.row == "regionspot-everything":
        out = row_everything(args)
    elif kind == "regionspot":
        out = row_regionspot(args, int(value))
    elif kind == "ovsam":
        out = row_ovsam(args, int(value))
    else:
        out = row_dense(args, int(value))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)
    if torch.device(args.device).type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    return out | {"peak_mib": round(peak)}


# ---- the table ------------------------------------------------------------------------------


def describe(row: str, r: dict, peak: float) -> str:
    share = f"{100 * r['gflops'] / r['s'] / peak:5.0f}%" if "gflops" in r else "     "
    gf = f"{r['gflops']:8.0f}" if "gflops" in r else " " * 8
    note = ""
    if "forwards" in r:
        note = f"{r['forwards']} forward(s) of <= {GDINO_TEXT_LIMIT} tokens"
    if "per_label_s" in r:
        note = f"80 x {r['per_label_s']:.2f} s per label (timed at {r['labels_timed']} labels)"
    if "sam_encoder_s" in r:
        note = f"SAM-B encoder alone {r['sam_encoder_s']:.2f} s"
    if "two_passes_s" in r:
        note += f"; with a second CLIP pass (before) {r['two_passes_s']:.2f} s"
    if "proposals" in r:
        note += f"; {r['proposals']} proposals kept (random weights)"
    if "backbone_s" in r:
        note = f"backbone alone {r['backbone_s']:.2f} s"
    return f"| {row} | {r['s']:.2f} | {gf} | {share} | {r['peak_mib']} | {note} |"


def goals(results: dict) -> list[str]:
    def s(row: str) -> float | None:
        return results[row]["s"] if row in results else None

    out = []
    pairs = [
        ("vild-1203", "owlv2-80", 0.5, "ViLD at 1,203 names / OWLv2 one pass"),
        ("vild-1203", "owlv2-pipeline", 0.1, "ViLD at 1,203 names / OWLv2 pipeline at 80"),
        ("vild-1203", "gdino-1203", 0.2, "ViLD / Grounding DINO-T, 1,203 names"),
        ("vild-1203", "vild-80", 1.1, "ViLD 1,203 names / 80 names"),
    ]
    for a, b, goal, words in pairs:
        if s(a) is not None and s(b) is not None:
            ratio = s(a) / s(b)
            out.append(
                f"{words}: {ratio:.2f}x (goal <= {goal}x){'' if ratio <= goal else ' MISSED'}"
            )
    if "regionspot-100" in results:
        r = results["regionspot-100"]
        ratio = r["s"] / r["sam_encoder_s"]
        out.append(f"RegionSpot at 100 boxes / its SAM encoder: {ratio:.2f}x (goal <= 1.3x)")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", default=",".join(ROWS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--pipeline-labels", type=int, default=2, help="labels the pipeline row times")
    p.add_argument("--tokens-per-name", type=int, default=4, help="Grounding DINO prompt tokens")
    p.add_argument(
        "--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="ViLD rows' autocast"
    )
    p.add_argument(
        "--contiguous",
        action="store_true",
        help="ViLD's backbone in NCHW, unfused (before the fast paths)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile ViLD's backbone (as --compile) and OWLv2's whole model (one-pass rows)",
    )
    p.add_argument("--row", help=argparse.SUPPRESS)  # one row, in a child process
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ovdet-real-size")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.row:
        print(json.dumps(run_row(args)))
        return
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        sys.exit(f"unknown rows {unknown}; rows: {', '.join(ROWS)}")
    peak = matmul_peak(args.device)
    threads = args.threads or torch.get_num_threads()
    print(
        f"random weights, {args.device}, torch {torch.__version__}, {threads} threads; fp32 "
        f"matmul peak {peak:.0f} GFLOP/s (2048^2, this run)"
    )
    print("| row | s/image | GFLOPs | of peak | peak MiB | |")
    print("|---|---:|---:|---:|---:|---|")
    results = {}
    for row in rows:
        command = [sys.executable, __file__, "--row", row, "--device", args.device]
        command += ["--pipeline-labels", str(args.pipeline_labels)]
        command += ["--tokens-per-name", str(args.tokens_per_name), "--cache", str(args.cache)]
        command += ["--threads", str(args.threads)] if args.threads else []
        command += ["--contiguous"] if args.contiguous else []
        command += ["--compile"] if args.compile else []
        command += ["--precision", args.precision]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"row {row} failed:\n{done.stderr[-3000:]}")
        results[row] = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            describe(row, results[row], peak), f"({time.perf_counter() - start:.0f} s)", flush=True
        )
    for line in goals(results):
        print(line)


if __name__ == "__main__":
    main()
