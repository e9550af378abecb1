"""`ovdet models`: the bundled models and the aliases of real checkpoints."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the bundled models and checkpoint aliases")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ovdet.models.bundled import list_models
    from ovdet.models.registry import CLIP_ALIASES

    table = Table(title="bundled models (offline; pass the name as --model, --clip or --sam)")
    for col in ("name", "kind", "present", "what"):
        table.add_column(col)
    for m in list_models():
        table.add_row(m["name"], m["kind"], "yes" if m["present"] else "no", m["description"])
    aliases = Table(title="aliases of real checkpoints (downloaded by transformers)")
    aliases.add_column("alias")
    aliases.add_column("hub id")
    from ovdet.models.sam import SAM_ALIASES

    for alias, hub in {**CLIP_ALIASES, **SAM_ALIASES}.items():
        aliases.add_row(alias, hub)
    console = Console()
    console.print(table)
    console.print(aliases)
    return 0
