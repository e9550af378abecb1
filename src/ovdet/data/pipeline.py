"""The training data pipeline at real scale: step-indexed batches decoded, resized, jittered and
flipped in DataLoader worker processes, each rank's share of the global batch, repeat-factor
sampling.

Step k's global batch of B images and every random choice made for its images (flip, scale,
crop, and the anchor and RoI samples the model draws with `Batch.generators`) come from
generators seeded with (seed, k, position in the global batch) alone. So a run gives the same
weights with 0 or N workers, a killed run resumes exactly at any step, and N processes that
each take B / N of the batch see what one process taking all of it sees.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from ovdet.data.coco import CocoDetection, Sample
from ovdet.errors import FormatError, OvdetError

SAMPLINGS = ("uniform", "repeat-factor", "epochs")
T = TypeVar("T")


def image_seed(seed: int, step: int, position: int) -> int:
    """The seed of the image at `position` of step `step`'s global batch."""
    return (seed * 1_000_003 + step) * 4099 + position + 1


def check_split(n: int, world: int, what: str = "global batch") -> None:
    """Refuse (one line) a step's `n` items that do not split evenly over `world` processes."""
    if n % world:
        raise OvdetError(f"the {what} ({n}) must split evenly over {world} processes")


def share(
    drawn: Sequence[T], seed: int, step: int, rank: int = 0, world: int = 1
) -> tuple[list[T], list[torch.Generator]]:
    """`rank`'s contiguous part of step `step`'s global list `drawn` (images, or groups of
    them), and a generator for each of its items seeded by the item's place in `drawn`: what the
    item's random choices draw from, whichever process takes it. `drawn` must split evenly."""
    check_split(len(drawn), world)
    per = len(drawn) // world
    positions = range(rank * per, (rank + 1) * per)
    generators = [torch.Generator().manual_seed(image_seed(seed, step, p)) for p in positions]
    return [drawn[p] for p in positions], generators


def repeat_factors(dataset: CocoDetection, threshold: float = 0.001) -> torch.Tensor:
    """(N,) LVIS repeat factors (Gupta et al., 2019): r(c) = max(1, sqrt(t / f(c))) with f(c) the
    share of training images holding category c; an image's factor is its categories' largest
    (1 for an image without annotations)."""
    n = len(dataset)
    labels = [set(dataset.labels[im["id"]]) for im in dataset.images]
    counts: dict[int, int] = {}
    for present in labels:
        for c in present:
            counts[c] = counts.get(c, 0) + 1
    r = {c: max(1.0, math.sqrt(threshold / (k / n))) for c, k in counts.items()}
    return torch.tensor([max((r[c] for c in present), default=1.0) for present in labels])


def global_batch(
    seed: int,
    step: int,
    size: int,
    n: int,
    weights: torch.Tensor | None = None,
    epochs: bool = False,
    groups: torch.Tensor | None = None,
) -> list[int]:
    """Step `step`'s B dataset indices, drawn with replacement: uniformly, or in proportion to
    `weights` (repeat factors: the with-replacement form of repeat-factor sampling); or, with
    `epochs`, without replacement: shuffled passes over the data, each image once per pass (the
    pass's order a permutation seeded by (seed, pass); a batch may straddle two passes).
    `groups` ((N,) group ids, e.g. `aspect_groups`): the step first draws one group, in
    proportion to its share of the images (or of their weights), then its B images within it."""
    if epochs and groups is not None:
        raise OvdetError("aspect-ratio groups draw with replacement: not with epoch sampling")
    if epochs:
        out = []
        for t in range(step * size, (step + 1) * size):
            epoch, k = divmod(t, n)
            out.append(int(epoch_order(seed, epoch, n)[k]))
        return out
    g = torch.Generator().manual_seed(image_seed(seed, step, -1))
    if groups is not None:
        w = weights.double() if weights is not None else torch.ones(n, dtype=torch.float64)
        totals = torch.zeros(int(groups.max()) + 1, dtype=torch.float64).index_add_(0, groups, w)
        chosen = torch.multinomial(totals, 1, generator=g)
        return torch.multinomial(w * (groups == chosen), size, True, generator=g).tolist()
    if weights is None:
        return torch.randint(n, (size,), generator=g).tolist()
    return torch.multinomial(weights, size, replacement=True, generator=g).tolist()


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Pass `epoch`'s order of `n` images: a permutation seeded by (seed, epoch) alone."""
    g = torch.Generator().manual_seed(image_seed(seed, -2 - epoch, -1))
    return torch.randperm(n, generator=g)


def aspect_groups(dataset: CocoDetection) -> torch.Tensor:
    """(N,) each image's aspect-ratio group: 0 landscape or square (w >= h), 1 portrait, from the
    annotation file's sizes (detectron2's grouping: a batch of one group pads little)."""
    sizes = [dataset.input_size(i) for i in range(len(dataset))]
    return torch.tensor([int(h > w) for h, w in sizes])


def batch_extent(sizes: Sequence[tuple[int, int]], side: int, divisor: int = 32) -> tuple[int, int]:
    """The (H, W) a batch of inputs of valid `sizes` is cut to: the largest h and w, rounded up
    to a multiple of `divisor` (the backbone's largest stride), at most `side`."""
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    return min(side, -(-h // divisor) * divisor), min(side, -(-w // divisor) * divisor)


def cut(sample: Sample, extent: tuple[int, int]) -> Sample:
    """`sample`'s square input (and masks) cut to `extent` (H, W): only padding is removed
    (refused in one line when the image is larger than its annotated width and height say)."""
    h, w = extent
    if sample.size[0] > h or sample.size[1] > w:
        raise FormatError(
            f"image {sample.image_id!r} is {sample.size[1]}x{sample.size[0]} in the input, more "
            f"than its annotated width and height allow ({w}x{h}): fix its width and height"
        )
    masks = sample.masks[:, :h, :w] if sample.masks is not None else None
    pixels = sample.pixels[:, :h, :w]
    return Sample(
        sample.image_id, pixels, sample.scale, sample.size, sample.boxes, sample.labels, masks
    )


@dataclass
class Augment:
    """Random changes to a training image: horizontal flip with probability 1/2; large-scale
    jitter (Ghiasi et al., 2021): the letterboxed image scaled by a factor drawn from
    `lsj_range`, then cropped at a random place or padded to the input square."""

    flip: bool = False
    lsj: bool = False
    lsj_range: tuple[float, float] = (0.1, 2.0)

    def __call__(self, sample: Sample, g: torch.Generator) -> Sample:
        if self.lsj:
            sample = _jitter(sample, self.lsj_range, g)
        if self.flip and torch.rand((), generator=g) < 0.5:
            sample = _flip(sample)
        return sample


def _flip(s: Sample) -> Sample:
    """Mirror the valid (h, w) part of the input; boxes and masks follow."""
    h, w = s.size
    pixels = s.pixels.clone()
    pixels[:, :h, :w] = s.pixels[:, :h, :w].flip(-1)
    boxes = s.boxes.clone()
    boxes[:, 0], boxes[:, 2] = w - s.boxes[:, 2], w - s.boxes[:, 0]
    masks = None
    if s.masks is not None:
        masks = s.masks.clone()
        masks[:, :h, :w] = s.masks[:, :h, :w].flip(-1)
    return Sample(s.image_id, pixels, s.scale, s.size, boxes, s.labels, masks)


def _jitter(s: Sample, scale_range: tuple[float, float], g: torch.Generator) -> Sample:
    """Scale the valid part by a random factor, then take a random side x side window of it
    (padding with the mean colour when smaller); boxes are cut to the window and dropped when
    less than 1 px remains, masks follow."""
    side = s.pixels.shape[-1]
    lo, hi = scale_range
    factor = lo + (hi - lo) * float(torch.rand((), generator=g))
    h, w = s.size
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    valid = s.pixels[None, :, :h, :w]
    scaled = F.interpolate(valid, size=(nh, nw), mode="bilinear", align_corners=False)
    y0 = int(torch.randint(nh - side + 1, (), generator=g)) if nh > side else 0
    x0 = int(torch.randint(nw - side + 1, (), generator=g)) if nw > side else 0
    crop = scaled[0, :, y0 : y0 + side, x0 : x0 + side]
    ch, cw = crop.shape[-2:]
    pixels = F.pad(crop, (0, side - cw, 0, side - ch))  # 0 is the mean colour once normalised
    scale_xy = torch.tensor([nw / w, nh / h, nw / w, nh / h])
    boxes = s.boxes * scale_xy - torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
    boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([cw, ch, cw, ch], dtype=torch.float32))
    keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
    masks = None
    if s.masks is not None:
        m = s.masks[:, None, :h, :w].float()
        m = F.interpolate(m, size=(nh, nw), mode="bilinear", align_corners=False)
        m = m[:, 0, y0 : y0 + side, x0 : x0 + side]
        masks = (F.pad(m, (0, side - cw, 0, side - ch)) >= 0.5)[keep]
    size = (int(ch), int(cw))
    return Sample(s.image_id, pixels, s.scale * factor, size, boxes[keep], s.labels[keep], masks)


@dataclass
class Batch:
    """One rank's share of a step's global batch."""

    step: int
    indices: list[int]  # dataset indices of this rank's images
    samples: list[Sample]
    generators: list[torch.Generator]  # one per image, seeded by its global position


def as_is(sample: Any, g: torch.Generator) -> Any:
    """The augmentation that changes nothing (a trainer whose images are its teacher's)."""
    return sample


class StepBatches(torch.utils.data.Dataset):
    """Item k is step k's `Batch` for `rank` of `world` processes (decoding and augmenting in
    the worker process that builds it). `dataset` is any map-style dataset (a `CocoDetection`,
    or Open-Vocabulary SAM's teacher-cached images); `augment` any picklable (sample, generator)
    -> sample. With `groups` (a `CocoDetection`'s `aspect_groups`), a step's images share a
    group and their inputs are cut to the global batch's `batch_extent` (no jitter: it changes
    the sizes the extent is computed from)."""

    def __init__(
        self,
        dataset: Any,
        seed: int,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        augment: Callable[[Any, torch.Generator], Any] | None = None,
        weights: torch.Tensor | None = None,
        epochs: bool = False,
        groups: torch.Tensor | None = None,
    ) -> None:
        check_split(batch_size, world)
        self.dataset, self.seed, self.batch_size = dataset, seed, batch_size
        self.rank, self.world = rank, world
        self.augment, self.weights, self.epochs = augment or Augment(), weights, epochs
        self.groups = groups
        if epochs and weights is not None:
            raise OvdetError("epoch sampling takes no weights (repeat factors draw with them)")

    def __getitem__(self, step: int) -> Batch:
        picked = global_batch(
            self.seed,
            step,
            self.batch_size,
            len(self.dataset),
            self.weights,
            self.epochs,
            self.groups,
        )
        indices, generators = share(picked, self.seed, step, self.rank, self.world)
        # the model's samplers go on drawing from each image's generator
        pairs = zip(indices, generators, strict=True)
        samples = [self.augment(self.dataset[i], g) for i, g in pairs]
        if self.groups is not None:  # every process cuts to the whole batch's extent
            sizes = [self.dataset.input_size(i) for i in picked]
            extent = batch_extent(sizes, self.dataset.side)
            samples = [cut(s, extent) for s in samples]
        return Batch(step, indices, samples, generators)

    def __len__(self) -> int:  # steps are indexed directly; the sampler says which
        return 2**62


def _identity(batch: Any) -> Any:
    return batch


class StepLoader:
    """Steps `start` .. `steps` - 1 of `batches`, in order, built `workers` processes ahead
    (0: in this process). `next_batch(step)` checks the step it is asked for."""

    def __init__(self, batches: StepBatches, start: int, steps: int, workers: int = 0) -> None:
        self.loader = torch.utils.data.DataLoader(
            batches,
            batch_size=None,
            sampler=range(start, steps),
            num_workers=workers,
            collate_fn=_identity,
            prefetch_factor=2 if workers else None,
            persistent_workers=False,
        )
        self._it: Iterator[Batch] | None = None

    def next_batch(self, step: int) -> Batch:
        if self._it is None:
            self._it = iter(self.loader)
        batch = next(self._it)
        if batch.step != step:
            raise RuntimeError(f"the loader gave step {batch.step}, the loop is at step {step}")
        return batch


class StartedLoader:
    """A `StepLoader` that begins at the step a run resumes at: give `start` to
    `train_resumable` as its `started` hook, then ask `next_batch(step)` each step."""

    def __init__(self, batches: StepBatches, steps: int, workers: int = 0) -> None:
        self.batches, self.steps, self.workers = batches, steps, workers
        self._loader: StepLoader | None = None

    def start(self, step: int) -> None:
        self._loader = StepLoader(self.batches, step, self.steps, self.workers)

    def next_batch(self, step: int) -> Batch:
        if self._loader is None:
            raise RuntimeError("the loader was not started (train_resumable calls start)")
        return self._loader.next_batch(step)
