"""`ovdet models`: the bundled models and the aliases of real checkpoints; `ovdet push RUN
user/repo`: a trained run to the Hugging Face Hub with a model card."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the bundled models and checkpoint aliases")
    p.set_defaults(run=run)
    p = sub.add_parser(
        "push",
        help="upload a trained run to the Hugging Face Hub (ovdet.load('user/repo') loads it)",
    )
    p.add_argument("run", help="a checkpoint folder (spec.json + model.safetensors)")
    p.add_argument("repo", help="the hub repo id, user/name (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.set_defaults(run=run_push)


def run_push(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ovdet.models.hub import push

    url = push(args.run, args.repo, private=args.private)
    Console().print(f"pushed {args.run} to {args.repo}: {url}")
    return 0


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
