"""Vocabularies from the forms people have them in: a comma list, a text file, JSON, or built-in."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ovdet.errors import VocabularyError
from ovdet.io.coco import is_file
from ovdet.types import Vocabulary

# The 80 COCO detection categories with their official ids.
COCO80: tuple[tuple[int, str], ...] = tuple(
    enumerate(
        (
            "person",
            "bicycle",
            "car",
            "motorcycle",
            "airplane",
            "bus",
            "train",
            "truck",
            "boat",
            "traffic light",
            "fire hydrant",
            None,
            "stop sign",
            "parking meter",
            "bench",
            "bird",
            "cat",
            "dog",
            "horse",
            "sheep",
            "cow",
            "elephant",
            "bear",
            "zebra",
            "giraffe",
            None,
            "backpack",
            "umbrella",
            None,
            None,
            "handbag",
            "tie",
            "suitcase",
            "frisbee",
            "skis",
            "snowboard",
            "sports ball",
            "kite",
            "baseball bat",
            "baseball glove",
            "skateboard",
            "surfboard",
            "tennis racket",
            "bottle",
            None,
            "wine glass",
            "cup",
            "fork",
            "knife",
            "spoon",
            "bowl",
            "banana",
            "apple",
            "sandwich",
            "orange",
            "broccoli",
            "carrot",
            "hot dog",
            "pizza",
            "donut",
            "cake",
            "chair",
            "couch",
            "potted plant",
            "bed",
            None,
            "dining table",
            None,
            None,
            "toilet",
            None,
            "tv",
            "laptop",
            "mouse",
            "remote",
            "keyboard",
            "cell phone",
            "microwave",
            "oven",
            "toaster",
            "sink",
            "refrigerator",
            None,
            "book",
            "clock",
            "vase",
            "scissors",
            "teddy bear",
            "hair drier",
            "toothbrush",
        ),
        start=1,
    )
)
COCO80 = tuple((i, n) for i, n in COCO80 if n is not None)

BUILTIN: dict[str, Vocabulary] = {"coco": Vocabulary(tuple(n for _, n in COCO80))}


VocabularyInput = Vocabulary | str | os.PathLike | Sequence[str]


def as_vocabulary(vocab: VocabularyInput) -> Vocabulary:
    """A `Vocabulary` from itself, an inline list or file (`parse_vocabulary`) or a list of
    names (each may hold `|` synonyms)."""
    if isinstance(vocab, Vocabulary):
        return vocab
    if isinstance(vocab, (str, os.PathLike)):
        return parse_vocabulary(vocab)
    if isinstance(vocab, (list, tuple)) and all(isinstance(v, str) for v in vocab):
        return _from_entries(list(vocab), "vocabulary list")
    raise VocabularyError(
        "expected a Vocabulary, an inline list such as 'cat, dog', a vocabulary file or a list "
        f"of names, got {type(vocab).__name__}"
    )


def parse_vocabulary(spec: str | os.PathLike, attributes: str | None = None) -> Vocabulary:
    """Build a Vocabulary from a spec.

    Args:
        spec: a built-in name ("coco"); a path to a .json file or a text file (one class per line,
            `|` between synonyms, `#` comments); or an inline comma list ("cat|kitty, dog").
        attributes: optional inline comma list of attribute words ("red, green").

    Raises:
        VocabularyError: empty, malformed or duplicated entries, or a missing file.
    """
    attrs = tuple(_split_list(attributes)) if attributes is not None else ()
    text = str(spec)
    if text in BUILTIN:
        base = BUILTIN[text]
    elif is_file(text):
        path = Path(text).expanduser()
        base = _from_json(path) if path.suffix.lower() == ".json" else _from_lines(path)
    elif "," not in text and Path(text).suffix.lower() in (".json", ".txt"):
        raise VocabularyError(f"vocabulary file not found: {text}")
    else:  # an inline list; a name may hold "/" ("AC/DC") and the list may be long
        base = _from_inline(text)
    return Vocabulary(base.names, base.synonyms, attrs or base.attributes)


def parse_inline_vocabulary(text: str) -> Vocabulary:
    """A vocabulary from text alone: a built-in name ("coco") or a comma list ("cat|kitty, dog").
    Never reads a file, so text from a remote client cannot name a path on this machine."""
    if not isinstance(text, str):
        raise VocabularyError(f"vocabulary must be text, got {type(text).__name__}")
    if text.strip() in BUILTIN:
        return BUILTIN[text.strip()]
    return _from_inline(text)


def _from_inline(text: str) -> Vocabulary:
    """An inline list: comma and/or newline separated ("cat|kitty, dog", or a pasted file's
    lines; blank lines are skipped), or JSON text in any of the file forms ('["cat", "dog"]')."""
    text = text.removeprefix("\ufeff")
    source = f"vocabulary {text[:80]!r}"
    if text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise VocabularyError(
                f'{source} starts like JSON but is not valid JSON ({e}); a plain list is "cat, dog"'
            ) from None
        return _from_json_data(data, source)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1:  # a pasted list, one or more names a line ("cat,\ndog,\n" too)
        lines = [ln.removesuffix(",") for ln in lines]
    entries = [e for ln in lines or [text] for e in _split_list(ln)]
    return _from_entries(entries, source)


def _split_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise VocabularyError(f"vocabulary is empty: {text!r}")
    empty = [i for i, item in enumerate(items) if not item]
    if empty:
        raise VocabularyError(f"vocabulary {text!r} has an empty entry at position {empty[0]}")
    return items


def _from_entries(entries: list[str], source: str) -> Vocabulary:
    names, synonyms = [], []
    for i, entry in enumerate(entries):
        parts = [_unquoted(p.strip()) for p in entry.split("|")]
        if not all(parts):
            raise VocabularyError(f"{source}: entry {i} {entry!r} has an empty name or synonym")
        names.append(parts[0])
        synonyms.append(tuple(parts[1:]))
    return Vocabulary(tuple(names), tuple(synonyms))


def _unquoted(text: str) -> str:
    """'"cat"' -> 'cat': one pair of matching quotes around a whole name is not part of it."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def _from_lines(path: Path) -> Vocabulary:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # a BOM is not a name
    except UnicodeDecodeError as e:
        raise VocabularyError(f"vocabulary file {path} is not UTF-8 text: {e}") from None
    entries = [ln.split("#", 1)[0].strip() for ln in lines]
    entries = [e for e in entries if e]
    if not entries:
        raise VocabularyError(f"vocabulary file {path} has no names")
    return _from_entries(entries, str(path))


def _from_json(path: Path) -> Vocabulary:
    from ovdet.io.coco import read_json

    try:
        data = read_json(path)
    except ValueError as e:
        raise VocabularyError(str(e)) from None
    return _from_json_data(data, str(path))


def _from_json_data(data: Any, source: str) -> Vocabulary:
    """A vocabulary from parsed JSON: a list of names or {'name', 'synonyms'}, {'names': [...]}
    or a COCO file's 'categories'."""
    if isinstance(data, dict) and "categories" in data:
        data = sorted(
            data["categories"], key=lambda c: c.get("id", 0) if isinstance(c, dict) else 0
        )
    if isinstance(data, dict) and "names" in data:
        names = _strings(data["names"], f"{source}: 'names'")
        syn = data.get("synonyms")
        if syn is None:
            syn = [[] for _ in names]
        if not isinstance(syn, list) or len(syn) != len(names):
            raise VocabularyError(
                f"{source}: 'synonyms' must be a list of one list per name ({len(names)}), "
                f"got {str(syn)[:80]}"
            )
        synonyms = tuple(
            tuple(_strings(x, f"{source}: synonyms of {n!r}", empty=True))
            for n, x in zip(names, syn, strict=True)
        )
        attrs = _strings(data.get("attributes", []), f"{source}: 'attributes'", empty=True)
        return Vocabulary(tuple(names), synonyms, tuple(attrs))
    if isinstance(data, list):
        return _from_json_list(data, source)
    raise VocabularyError(
        f"{source}: expected a list of names, a list of {{'name', 'synonyms'}}, "
        f"{{'names': [...]}} or a COCO file with 'categories', got {type(data).__name__}"
    )


def _strings(value: Any, where: str, empty: bool = False) -> list[str]:
    """`value` as a list of non-empty strings; a bare string is refused, not split into letters."""
    if not isinstance(value, list):
        raise VocabularyError(f"{where} is {str(value)[:60]!r}; expected a list of strings")
    bad = [v for v in value if not isinstance(v, str) or not v.strip()]
    if bad:
        raise VocabularyError(f"{where} holds {bad[0]!r}; expected non-empty strings")
    if not value and not empty:
        raise VocabularyError(f"{where} is empty")
    return [v.strip() for v in value]


def vocabulary_from_categories(categories: list[Any], source: str = "categories") -> Vocabulary:
    """COCO/LVIS `categories` -> Vocabulary in category-id order (LVIS synonyms included)."""
    if not isinstance(categories, list):
        raise VocabularyError(f"{source}: 'categories' must be a list")
    ordered = sorted(categories, key=lambda c: c.get("id", 0) if isinstance(c, dict) else 0)
    return _from_json_list(ordered, source)


def _from_json_list(items: list[Any], source: str) -> Vocabulary:
    names, synonyms = [], []
    for i, item in enumerate(items):
        if isinstance(item, str):
            names.append(item)
            synonyms.append(())
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            syn = item.get("synonyms")
            syn = _strings([] if syn is None else syn, f"{source}: entry {i}'s synonyms", True)
            # LVIS synonyms are snake_case and repeat the name; normalise both.
            name = item["name"].replace("_", " ")
            extra = [
                s.replace("_", " ") for s in syn if s.replace("_", " ").lower() != name.lower()
            ]
            names.append(name)
            synonyms.append(tuple(dict.fromkeys(extra)))
        else:
            raise VocabularyError(
                f"{source}: entry {i} must be a name or {{'name': ...}}, got {item!r}"
            )
    return Vocabulary(tuple(names), tuple(synonyms))
