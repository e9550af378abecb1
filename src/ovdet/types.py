"""The two types every ovdet tool speaks: `Regions` (what is where), `Vocabulary` (what to call it).

Imports only numpy and torch, so every other module can depend on it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ovdet.errors import BoxError, VocabularyError

_OPTIONAL_TENSORS = ("scores", "labels", "masks", "embeddings")


@dataclass
class Regions:
    """Regions of one image; every field has N rows. Boxes are XYXY in original-image pixels.

    Attributes:
        xyxy: (N, 4) float32 boxes, x1 y1 x2 y2 in pixels of the original image.
        image_size: (H, W) of the original image.
        scores: (N,) confidence in [0, 1], or None.
        labels: (N,) int64 indices into the Vocabulary used, or None.
        masks: (N, H, W) bool masks at the original resolution, or None.
        embeddings: (N, D) L2-normalised region embeddings, or None.
        data: extra per-row columns (tensors or lists with N rows), e.g. "class_scores" (N, C).
    """

    xyxy: torch.Tensor
    image_size: tuple[int, int]
    scores: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = torch.as_tensor(self.xyxy, dtype=torch.float32)
        if self.xyxy.numel() == 0:
            self.xyxy = self.xyxy.reshape(0, 4)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise BoxError(f"xyxy must have shape (N, 4), got {tuple(self.xyxy.shape)}")
        if not torch.isfinite(self.xyxy).all():
            bad = (~torch.isfinite(self.xyxy)).any(1).nonzero()[:, 0].tolist()
            raise BoxError(f"xyxy has non-finite values in rows {bad[:10]}")
        if len(self.image_size) != 2 or min(int(s) for s in self.image_size) <= 0:
            raise ValueError(f"image_size must be (H, W) with H, W > 0, got {self.image_size}")
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        n = len(self)
        if self.scores is not None:
            self.scores = torch.as_tensor(self.scores, dtype=torch.float32)
            self._check_rows("scores", self.scores, (n,))
            if torch.isnan(self.scores).any():
                raise ValueError("scores contain NaN")
        if self.labels is not None:
            self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
            self._check_rows("labels", self.labels, (n,))
        if self.masks is not None:
            self.masks = torch.as_tensor(self.masks, dtype=torch.bool)
            self._check_rows("masks", self.masks, (n, *self.image_size))
        if self.embeddings is not None:
            self.embeddings = torch.as_tensor(self.embeddings, dtype=torch.float32)
            if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
                raise ValueError(
                    f"embeddings must have shape ({n}, D), got {tuple(self.embeddings.shape)}"
                )
        for key, value in self.data.items():
            if len(value) != n:
                raise ValueError(f"data[{key!r}] must have {n} rows, got {len(value)}")

    @staticmethod
    def _check_rows(name: str, value: torch.Tensor, expected: tuple[int, ...]) -> None:
        if tuple(value.shape) != expected:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(value.shape)}")

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: int | slice | torch.Tensor | Sequence[int]) -> Regions:
        """Select rows; returns a new `Regions` (an int keeps a length-1 result)."""
        if isinstance(index, torch.Tensor) and index.ndim == 0 and index.dtype != torch.bool:
            index = int(index)  # a 0-d tensor (or numpy integer, below) is an int
        elif isinstance(index, numbers.Integral) and not isinstance(index, bool):
            index = int(index)
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(f"index {index} is out of range for {len(self)} regions")
            index = slice(index, index + 1 if index != -1 else None)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index)
            if index.dtype == torch.bool and index.shape != (len(self),):
                raise IndexError(
                    f"boolean index must have shape ({len(self)},), got {tuple(index.shape)}"
                )
        kwargs = {name: _take(getattr(self, name), index) for name in _OPTIONAL_TENSORS}
        data = {key: _take(value, index) for key, value in self.data.items()}
        return Regions(self.xyxy[index], self.image_size, data=data, **kwargs)

    def __iter__(self) -> Iterator[Regions]:
        for i in range(len(self)):
            yield self[i]

    @staticmethod
    def cat(parts: Sequence[Regions]) -> Regions:
        """Concatenate regions of one image; fields present in some parts only are an error."""
        if not parts:
            raise ValueError("Regions.cat needs at least one Regions")
        sizes = {p.image_size for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"Regions.cat needs one image size, got {sorted(sizes)}")
        kwargs: dict[str, Any] = {}
        for name in _OPTIONAL_TENSORS:
            present = [getattr(p, name) is not None for p in parts]
            if any(present) and not all(present):
                raise ValueError(f"Regions.cat: field {name!r} is set in some parts only")
            if all(present):
                kwargs[name] = torch.cat([getattr(p, name) for p in parts])
        keys = [set(p.data) for p in parts]
        if any(k != keys[0] for k in keys):
            raise ValueError(f"Regions.cat: data columns differ: {[sorted(k) for k in keys]}")
        data = {key: _cat([p.data[key] for p in parts]) for key in keys[0]}
        return Regions(torch.cat([p.xyxy for p in parts]), parts[0].image_size, data=data, **kwargs)

    def to(self, device: torch.device | str) -> Regions:
        """Move every tensor field to `device`."""
        return self._map_tensors(lambda t: t.to(device))

    def float(self) -> Regions:
        """Every floating tensor field (data columns too) in float32, e.g. after bf16 autocast;
        labels and masks keep their types."""
        return self._map_tensors(lambda t: t.float() if t.is_floating_point() else t)

    def _map_tensors(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Regions:
        """`fn` applied to every tensor field and tensor data column."""
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("xyxy", *_OPTIONAL_TENSORS):
            if kwargs[name] is not None:
                kwargs[name] = fn(kwargs[name])
        kwargs["data"] = {
            k: fn(v) if isinstance(v, torch.Tensor) else v for k, v in self.data.items()
        }
        return Regions(**kwargs)

    def replace(self, **changes: Any) -> Regions:
        """A new `Regions` with some fields changed, validated like any other (never assign
        `labels` or `scores` on an existing object: that would skip the shape checks)."""
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        unknown = set(changes) - set(kwargs)
        if unknown:
            raise TypeError(f"Regions has no field(s) {sorted(unknown)}")
        return Regions(**(kwargs | changes))

    def to_supervision(self, names: Sequence[str] | None = None) -> Any:
        """These regions as a `supervision.Detections` (needs `ovdet[interop]`; see
        `ovdet.interop.supervision`); `names` add a "class_name" column."""
        from ovdet.interop.supervision import to_supervision

        return to_supervision(self, names)

    @staticmethod
    def from_supervision(detections: Any, image_size: tuple[int, int] | None = None) -> Regions:
        """A `supervision.Detections` of an (H, W) image as `Regions` (`image_size` defaults
        to the masks' size)."""
        from ovdet.interop.supervision import from_supervision

        return from_supervision(detections, image_size)

    def topk_labels(self, k: int) -> Regions:
        """Each region once per each of its `k` best classes (from data["class_scores"], (N, C)):
        labels and scores are those classes and their scores; data["row"] is the source row.

        Returns (N * k) regions, region-major (all of row 0's classes first).
        """
        class_scores = self.data.get("class_scores")
        if class_scores is None:
            raise ValueError("topk_labels needs data['class_scores'] (N, C)")
        k = max(1, min(int(k), int(class_scores.shape[1]))) if len(self) else 1
        top = class_scores.topk(k, dim=1)  # (N, k)
        rows = torch.arange(len(self)).repeat_interleave(k)
        picked = self[rows]
        picked.data["row"] = rows
        return picked.replace(labels=top.indices.flatten(), scores=top.values.flatten())

    def with_nms(self, iou: float, class_agnostic: bool = False) -> Regions:
        """Greedy NMS on `scores` (within each label unless `class_agnostic`), best first."""
        from ovdet.ops.nms import batched_nms, nms

        if self.scores is None:
            raise ValueError("with_nms needs scores")
        if class_agnostic or self.labels is None:
            keep = nms(self.xyxy, self.scores, iou)
        else:
            keep = batched_nms(self.xyxy, self.scores, self.labels, iou)
        return self[keep]

    @property
    def area(self) -> torch.Tensor:
        """(N,) box areas in pixels (0 for degenerate boxes)."""
        wh = (self.xyxy[:, 2:] - self.xyxy[:, :2]).clamp(min=0)
        return wh[:, 0] * wh[:, 1]


def _take(value: Any, index: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value[index]
    if isinstance(value, np.ndarray):
        return value[index.numpy() if isinstance(index, torch.Tensor) else index]
    if isinstance(index, slice):
        return list(value[index])
    if index.dtype == torch.bool:
        index = index.nonzero()[:, 0]
    return [value[i] for i in index.tolist()]


def _cat(values: list[Any]) -> Any:
    if isinstance(values[0], torch.Tensor):
        return torch.cat(values)
    if isinstance(values[0], np.ndarray):
        return np.concatenate(values)
    return [x for v in values for x in v]


@dataclass(frozen=True)
class Vocabulary:
    """The names to recognise, with optional synonyms and attributes.

    Attributes:
        names: C class names, unique and non-empty.
        synonyms: C tuples of extra names for each class (prompts are averaged over all of them).
        attributes: optional attribute words (e.g. colours) for `P(v, a | r) = P(v | r) P(a | r)`.
    """

    names: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...] = ()
    attributes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for what, value in (("names", self.names), ("attributes", self.attributes)):
            if isinstance(value, str):  # would be taken letter by letter
                raise VocabularyError(
                    f"{what} must be a sequence of strings, got the string {value!r:.60}; "
                    f"e.g. ({value!r:.40},) or parse_vocabulary({value!r:.40})"
                )
        if any(isinstance(syn, str) for syn in self.synonyms):
            raise VocabularyError(
                "synonyms must hold one tuple of strings per name, got a string in "
                f"{tuple(self.synonyms)!r:.80}"
            )
        names = tuple(_clean_name(n, "name") for n in self.names)
        if not names:
            raise VocabularyError("vocabulary is empty: give at least one name")
        seen: dict[str, int] = {}
        for i, n in enumerate(names):
            if n.lower() in seen:
                raise VocabularyError(
                    f"vocabulary name {n!r} appears twice (entries {seen[n.lower()]} and {i})"
                )
            seen[n.lower()] = i
        synonyms = tuple(tuple(_clean_name(s, "synonym") for s in syn) for syn in self.synonyms)
        if not synonyms:
            synonyms = tuple(() for _ in names)
        if len(synonyms) != len(names):
            raise VocabularyError(
                f"synonyms must have one entry per name ({len(names)}), got {len(synonyms)}"
            )
        attributes = tuple(_clean_name(a, "attribute") for a in self.attributes)
        if len(set(attributes)) != len(attributes):
            raise VocabularyError(f"attributes contain duplicates: {list(attributes)}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "synonyms", synonyms)
        object.__setattr__(self, "attributes", attributes)

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Index of `name` (case-insensitive); raises with the known names if absent."""
        lowered = [n.lower() for n in self.names]
        if name.lower() not in lowered:
            raise VocabularyError(f"{name!r} is not in the vocabulary {list(self.names)}")
        return lowered.index(name.lower())

    def all_names(self, i: int) -> tuple[str, ...]:
        """The name of class `i` followed by its synonyms."""
        return (self.names[i], *self.synonyms[i])

    def novel_mask(self, base_names: Sequence[str]) -> torch.Tensor:
        """(C,) bool: the classes whose name is not among `base_names` (case-insensitive), i.e.
        those a detector trained on `base_names` never saw."""
        base = {n.lower() for n in base_names}
        return torch.tensor([n.lower() not in base for n in self.names], dtype=torch.bool)

    def subset(self, indices: Sequence[int]) -> Vocabulary:
        """A vocabulary of the given classes, in the given order."""
        return Vocabulary(
            tuple(self.names[i] for i in indices),
            tuple(self.synonyms[i] for i in indices),
            self.attributes,
        )


def _clean_name(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise VocabularyError(
            f"vocabulary {what} must be a string, got {type(value).__name__}: {value!r}"
        )
    cleaned = " ".join(value.split())
    if not cleaned:
        raise VocabularyError(f"vocabulary {what} is empty or whitespace: {value!r}")
    return cleaned
