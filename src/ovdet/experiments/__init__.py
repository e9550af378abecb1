"""Shapes-world reproductions of the papers' tables: they train, evaluate and tabulate methods."""

from __future__ import annotations

from collections.abc import Iterable


def asked_rows(rows: str, known: Iterable[str]) -> list[str]:
    """Comma-separated row names -> those rows in the order asked (empty: every known row, in the
    table's order); a name that is not a row is refused with the list."""
    from ovdet.errors import ConfigError

    known = list(known)
    asked = list(dict.fromkeys(r.strip() for r in rows.split(",") if r.strip()))
    unknown = [r for r in asked if r not in known]
    if unknown:
        raise ConfigError(f"rows must name rows of {known}, got {unknown}")
    return asked or known
