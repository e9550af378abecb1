"""Train the shapes world's tiny CLIP contrastively on the caption split.

Recipe (chosen to pass the acceptance bar on a 2-core CPU in about twenty minutes): 64 px
images, batch 128, 1,500 steps of AdamW (lr 2e-3, weight decay 0.05, 100 warm-up steps, cosine
decay), random resized crops (scale 0.7-1) and horizontal flips. `channels_last` runs the image
tower in channels-last memory (about 20% faster per step on this CPU; off by default, the
bundled model was trained without it). Captions describing the same content (the
same shapes; same colours where the caption names them) are all positives of an image: with 16
shapes x 8 colours, a batch of 128 holds many duplicates, and treating them as negatives (plain
CLIP) teaches the model to separate identical descriptions. This is the multi-positive
contrastive loss of UniCL (Yang et al., CVPR 2022).

Shapes world v2's stages add two rules (both off by default): `partial_positive` makes a caption
that names some of an image's objects one of its positives (CLIP's web captions name some of what
a photo shows), and `label_weight` adds UniCL's image-label loss over all 16 shape names, every
shape an image shows an equal share of the target.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ovdet.data.shapes.captions import MULTI, SINGLE
from ovdet.data.shapes.world import CATEGORIES, COLOURS
from ovdet.errors import FormatError, OvdetError
from ovdet.io.atomic import atomic_folder, check_replaceable, write_json
from ovdet.io.coco import read_json
from ovdet.io.images import load_image
from ovdet.ops.roi_align import roi_align
from ovdet.train.common import flushes_denormals, run_steps, warmup_cosine
from ovdet.vocab.prompts import ENSEMBLE, TEMPLATE_SETS


@dataclass
class ClipTrainConfig:
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 100
    seed: int = 0
    crop_scale: float = 0.7  # smallest side of a random crop, relative to the image
    channels_last: bool = False  # image tower in channels-last memory (faster on CPU)
    init: str = ""  # start from this shapes-clip (bundled name or folder) and keep its tokenizer
    ignore_partial: bool = False  # a caption naming some of an image's objects is no negative
    partial_positive: bool = False  # ... is a positive (as CLIP's captions name some of a scene)
    label_weight: float = 0.0  # weight of the image-label loss over every shape's name

    def __post_init__(self) -> None:
        from ovdet.config import check_fields

        check_fields(
            self,
            positive=("steps", "batch_size", "lr", "crop_scale"),
            nonnegative=("weight_decay", "warmup", "seed", "label_weight"),
            unit=("crop_scale",),
        )
        if self.ignore_partial and self.partial_positive:
            raise ValueError(
                "ignore_partial and partial_positive are two rules for the same captions; "
                "choose one"
            )


def words_of(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()


def build_tokenizer(texts: list[str]) -> Any:
    """A word-level tokenizer over the words of `texts`, the prompt templates and the names."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    corpus = [
        *texts,
        *(t for ts in TEMPLATE_SETS.values() for t in ts),
        *SINGLE,
        *MULTI,
        *COLOURS,
        "object",
        *(n for name, _, syn in CATEGORIES for n in (name, *syn)),
    ]
    from ovdet.models.shapes_clip import SPECIAL_TOKENS

    vocab = dict(SPECIAL_TOKENS)
    for word in sorted({w for t in corpus for w in words_of(t.replace("{}", " "))}):
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), normalizers.Replace(Regex(r"[^a-z0-9 ]"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]",
        special_tokens=[("[BOS]", SPECIAL_TOKENS["[BOS]"]), ("[EOS]", SPECIAL_TOKENS["[EOS]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="[BOS]",
        eos_token="[EOS]",
        pad_token="[PAD]",
        unk_token="[UNK]",
    )


def load_caption_split(folder: str | os.PathLike) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """(N, 3, S, S) uint8 images and their caption records (a shapes world's captions.json:
    a list of {file_name, caption, objects, mentions}; anything else refused in one line)."""
    folder = Path(folder)
    records = read_json(folder / "captions.json")
    keys = ("file_name", "caption", "objects", "mentions")
    if not isinstance(records, list) or not records:
        raise FormatError(
            f"{folder / 'captions.json'}: expected a non-empty list of caption records, got "
            f"{type(records).__name__}{'' if records else ' (empty)'}"
        )
    for i, r in enumerate(records):
        if not isinstance(r, dict) or any(k not in r for k in keys):
            raise FormatError(
                f"{folder / 'captions.json'}: record {i} is not a shapes-world caption record "
                f"with {', '.join(keys)}: {str(r)[:80]}"
            )
    images = torch.stack(
        [load_image(folder / r["file_name"]) for r in tqdm(records, desc="load", unit="img")]
    )
    return images, records


def load_caption_splits(
    folders: Sequence[str | os.PathLike],
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Caption splits joined in order: (N, 3, S, S) uint8 images (one side S for all) and
    their records."""
    if not folders:
        raise OvdetError("no caption split to train on: give at least one world")
    splits = [load_caption_split(f) for f in folders]
    sides = {tuple(images.shape[-2:]) for images, _ in splits}
    if len(sides) > 1:
        sizes = [
            f"{f}: {images.shape[-1]} px" for f, (images, _) in zip(folders, splits, strict=True)
        ]
        raise OvdetError(f"caption splits of different image sizes cannot train together: {sizes}")
    return torch.cat([i for i, _ in splits]), [r for _, records in splits for r in records]


def _matches(objects: list[tuple], mentions: list[tuple]) -> bool:
    """Each mention matched to a distinct object of the same category and, where named, colour."""
    return any(
        all(
            a[0] == b[0] and (b[1] is None or a[1] == b[1])
            for a, b in zip(p, mentions, strict=True)
        )
        for p in itertools.permutations(objects, len(mentions))
    )


def caption_matrices(records: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, B) bool positives: caption j describes image i (as many objects, every mention
    matched to a distinct object); and (B, B) bool partial: caption j describes some but not
    all of image i's objects (true of the image, yet not its description)."""
    objs = [[(o["category"], o["colour"]) for o in r["objects"]] for r in records]
    mentions = [[(m["category"], m["colour"]) for m in r["mentions"]] for r in records]
    positive = torch.zeros(len(records), len(records), dtype=torch.bool)
    partial = torch.zeros_like(positive)
    for i, o in enumerate(objs):
        for j, m in enumerate(mentions):
            if len(m) <= len(o) and _matches(o, m):
                (positive if len(m) == len(o) else partial)[i, j] = True
    return positive, partial


def positive_matrix(records: list[dict[str, Any]]) -> torch.Tensor:
    """(B, B) bool: caption j describes image i (see `caption_matrices`)."""
    return caption_matrices(records)[0]


def multi_positive_loss(
    logits: torch.Tensor, positives: torch.Tensor, ignore: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over both directions of -mean_{j in P(i)} log softmax(logits)_ij; pairs in `ignore`
    are left out of the softmax (neither positive nor negative)."""
    if ignore is not None:
        logits = logits.masked_fill(ignore & ~positives, float("-inf"))
    return (
        positive_nll(logits, positives).mean() + positive_nll(logits.t(), positives.t()).mean()
    ) / 2


def positive_nll(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """(N, M) logits, (N, M) bool -> (N,) -mean_{j in P(i)} log softmax(logits)_ij."""
    p = positives.float()
    return -(F.log_softmax(logits, 1).masked_fill(~positives, 0) * p).sum(1) / p.sum(1)


def label_prompts(g: torch.Generator) -> list[str]:
    """One prompt per shape category (CATEGORIES' order), a random ensemble template and a random
    one of each shape's names."""
    template = ENSEMBLE[int(torch.randint(len(ENSEMBLE), (1,), generator=g))]
    names = [(name, *syn) for name, _, syn in CATEGORIES]
    return [template.format(n[int(torch.randint(len(n), (1,), generator=g))]) for n in names]


def label_matrix(records: list[dict[str, Any]]) -> torch.Tensor:
    """(B, C) bool: image i shows an object of shape category c (CATEGORIES' order)."""
    index = {name: k for k, (name, _, _) in enumerate(CATEGORIES)}
    present = torch.zeros(len(records), len(CATEGORIES), dtype=torch.bool)
    for i, r in enumerate(records):
        for o in r["objects"]:
            present[i, index[o["category"]]] = True
    return present


def label_loss(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """(B, C) image-to-name logits, (B, C) bool -> mean over images of -mean_{c present}
    log softmax(logits)_c: every shape an image shows is an equally right name of it, so an
    image of two shapes learns to rank both names first (UniCL's image-label data)."""
    return positive_nll(logits, present).mean()


def random_crops(images: torch.Tensor, scale: float, g: torch.Generator) -> torch.Tensor:
    """(B, 3, S, S) float -> random resized crops (side in [scale, 1] x S), half flipped."""
    b, _, s, _ = images.shape
    side = s * (scale + (1 - scale) * torch.rand(b, generator=g))
    x0 = (s - side) * torch.rand(b, generator=g)
    y0 = (s - side) * torch.rand(b, generator=g)
    boxes = torch.stack([torch.arange(b, dtype=torch.float32), x0, y0, x0 + side, y0 + side], 1)
    out = roi_align(images, boxes, (s, s), sampling_ratio=2, aligned=True)
    flip = torch.rand(b, generator=g) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def _start(init: str, captions: list[str], image_size: int) -> tuple[Any, Any]:
    """A fresh model and a tokenizer over `captions`, or the model and tokenizer of `init`."""
    from ovdet.models.shapes_clip import ShapesClipConfig, ShapesClipModel

    if not init:
        tokenizer = build_tokenizer(captions)
        config = ShapesClipConfig(vocab_size=len(tokenizer), image_size=image_size)
        return ShapesClipModel(config), tokenizer
    from transformers import PreTrainedTokenizerFast

    from ovdet.models.bundled import resolve_bundled

    folder = resolve_bundled(init)
    model = ShapesClipModel.from_pretrained(folder, dtype=torch.float32)
    if model.config.image_size != image_size:
        raise ValueError(
            f"--init {init!r} was trained on {model.config.image_size} px images, "
            f"the caption split has {image_size} px"
        )
    return model, PreTrainedTokenizerFast.from_pretrained(folder)


@flushes_denormals
def train_shapes_clip(
    data: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    cfg: ClipTrainConfig,
) -> Path:
    """Train on `data`/captions (one world, or several whose caption splits are joined in the
    order given) and save model + tokenizer to `out` (atomically: `out` must be new, empty or
    an earlier model folder)."""
    check_replaceable(out, "config.json", "model")
    folders = [Path(data)] if isinstance(data, (str, os.PathLike)) else [Path(d) for d in data]
    torch.manual_seed(cfg.seed)
    images, records = load_caption_splits([f / "captions" for f in folders])
    model, tokenizer = _start(cfg.init, [r["caption"] for r in records], int(images.shape[-1]))
    config = model.config
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.train().to(memory_format=fmt)
    mean, std = (
        torch.tensor(config.image_mean).view(3, 1, 1),
        torch.tensor(config.image_std).view(3, 1, 1),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)

    def step_losses(step: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(records), (cfg.batch_size,), generator=g)
        batch = [records[i] for i in idx.tolist()]
        pixels = (random_crops(images[idx].float(), cfg.crop_scale, g) / 255 - mean) / std
        pixels = pixels.contiguous(memory_format=fmt)
        labels = label_prompts(g) if cfg.label_weight > 0 else []
        tokens = tokenizer(
            [r["caption"] for r in batch] + labels,
            padding=True,
            truncation=True,
            max_length=config.max_text_length,
            return_tensors="pt",
        )
        logits, _ = model(pixels, tokens["input_ids"], tokens["attention_mask"])
        logits, by_name = logits[:, : len(batch)], logits[:, len(batch) :]
        positive, partial = caption_matrices(batch)
        if cfg.partial_positive:
            positive = positive | partial
        ignore = partial if cfg.ignore_partial else None
        losses = {"contrastive": multi_positive_loss(logits, positive, ignore)}
        if labels:
            losses["labels"] = cfg.label_weight * label_loss(by_name, label_matrix(batch))
        return losses

    run_steps(step_losses, model, opt, sched, cfg.steps, cfg.seed, desc="train shapes-clip")
    out = Path(out)
    with atomic_folder(out) as tmp:  # a killed save leaves the previous model whole
        model.eval().to(memory_format=torch.contiguous_format).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        names = [str(f) for f in folders]
        write_json(
            tmp / "training.json",
            {"recipe": asdict(cfg), "data": names[0] if len(names) == 1 else names},
            indent=1,
        )
    return out
