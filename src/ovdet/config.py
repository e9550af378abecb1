"""Checks of configuration dataclasses: one line naming the field and the value received.

Every config's `__post_init__` calls `check_fields`, so a bad value fails the same way whether it
came from the command line (`--batch-size 0`), a JSON preset or Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ovdet.errors import ConfigError


def _number(obj: Any, name: str) -> float:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name.replace('_', '-')} must be a finite number, got {value!r}")
    return value


def check_fields(
    obj: Any,
    positive: Iterable[str] = (),
    nonnegative: Iterable[str] = (),
    unit: Iterable[str] = (),
    choices: Mapping[str, Iterable[Any]] | None = None,
) -> None:
    """Raise `ConfigError` unless the named fields of `obj` are: finite and > 0 (`positive`),
    finite and >= 0 (`nonnegative`), in [0, 1] (`unit`), one of the listed values (`choices`)."""
    for name in positive:
        if _number(obj, name) <= 0:
            raise ConfigError(f"{name.replace('_', '-')} must be > 0, got {getattr(obj, name)!r}")
    for name in nonnegative:
        if _number(obj, name) < 0:
            raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {getattr(obj, name)!r}")
    for name in unit:
        if not 0 <= _number(obj, name) <= 1:
            raise ConfigError(
                f"{name.replace('_', '-')} must be in [0, 1], got {getattr(obj, name)!r}"
            )
    for name, allowed in (choices or {}).items():
        allowed = list(allowed)
        if getattr(obj, name) not in allowed:
            raise ConfigError(
                f"{name.replace('_', '-')} must be one of {allowed}, got {getattr(obj, name)!r}"
            )
