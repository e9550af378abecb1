"""Option types that refuse bad numbers at parse time, and one dataclass <-> argparse bridge.

Imports nothing heavy: `ovdet --help` and every parse error stay fast.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, fields
from typing import Any


def _number(kind: type, test: Callable[[float], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or not test(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, lambda v: v > 0, "an integer > 0")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a finite number > 0")
nonnegative_float = _number(float, lambda v: v >= 0, "a finite number >= 0")
finite_float = _number(float, lambda v: True, "a finite number")
unit_float = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
port_number = _number(int, lambda v: 0 < v < 65536, "a port number in 1-65535")


def add_dataclass_args(
    p: argparse.ArgumentParser,
    cls: type,
    skip: Iterable[str] = (),
    choices: Mapping[str, Iterable[Any]] | None = None,
) -> None:
    """One `--field-name` option per field of dataclass `cls` (defaults from the class; booleans
    as --x/--no-x; lists as comma-separated values). Ranges are the dataclass's own
    `__post_init__` checks."""
    skip, choices = set(skip), choices or {}
    notes = field_comments(cls)
    for f in fields(cls):
        if f.name in skip or (f.default is MISSING and f.default_factory is MISSING):
            continue
        flag = f"--{f.name.replace('_', '-')}"
        if f.default is MISSING:
            default = f.default_factory()
            if not isinstance(default, list) or not default:
                continue
            p.add_argument(
                flag,
                type=comma_list(type(default[0])),
                default=default,
                help=_help(
                    notes, f.name, f"comma-separated (default {','.join(map(str, default))})"
                ),
            )
            continue
        if isinstance(f.default, bool):
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=f.default,
                help=_help(notes, f.name, ""),
            )
            continue
        kind = {int: int, float: finite_float, str: str}[type(f.default)]
        allowed = sorted(choices[f.name]) if f.name in choices else None
        p.add_argument(
            flag,
            type=kind,
            default=f.default,
            choices=allowed,
            help=_help(notes, f.name, f"(default {f.default!r})"),
        )


def field_comments(cls: type) -> dict[str, str]:
    """Each field's trailing comment in `cls`'s source (its units or reason), for --help."""
    import inspect
    import re

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    found = re.finditer(r"^\s+(\w+): [^#\n]*#\s*(.+)$", source, flags=re.MULTILINE)
    return {m.group(1): m.group(2).strip() for m in found}


def _help(notes: dict[str, str], name: str, default: str) -> str:
    """argparse help: the field's comment, then its default (percent signs escaped)."""
    text = " ".join(t for t in (notes.get(name, ""), default) if t)
    return text.replace("%", "%%")


def dataclass_from_args(cls: type, args: argparse.Namespace, skip: Iterable[str] = ()) -> Any:
    """Build `cls` from the options `add_dataclass_args` added (skipped fields keep defaults)."""
    skip = set(skip)
    return cls(
        **{
            f.name: getattr(args, f.name)
            for f in fields(cls)
            if f.name not in skip and hasattr(args, f.name)
        }
    )


def comma_list(kind: type) -> Callable[[str], list]:
    """An option type: "a,b,c" -> [kind(a), kind(b), kind(c)] (no empty entries)."""

    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",")]
        if not text.strip() or any(not t for t in items):
            raise argparse.ArgumentTypeError(f"expected comma-separated values, got {text!r}")
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values, got {text!r}"
            ) from None

    parse.__name__ = f"comma-separated {kind.__name__} list"
    return parse


def device(text: str) -> str:
    """A torch device this machine has: "cpu", "cuda", "cuda:N" (N < the GPU count), "mps"."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}; expected cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"device {text!r}: this torch {torch.__version__} has no CUDA device "
                "(a CPU-only build, or no GPU visible); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"device {text!r}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"device {text!r}: MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"device {text!r}: ovdet runs on cpu, cuda or mps")
    return text


device.__name__ = "device"
