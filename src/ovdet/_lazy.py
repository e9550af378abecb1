"""Lazy re-exports (PEP 562): a package names what it offers; the module loads on first use.

So `import ovdet`, `ovdet --help` and `ovdet eval` on JSON files never pay for transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], list]:
    """(`__getattr__`, `__all__`) for `package`: name -> the module (absolute) that defines it."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__, sorted(exports)
