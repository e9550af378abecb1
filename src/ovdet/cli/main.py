"""`ovdet` entry point: subcommands, one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys

from ovdet.cli import (
    cache,
    classify,
    demo,
    detect,
    eval_ovsam,
    evaluate,
    export,
    index,
    label,
    models,
    recognize,
    serve,
    shapes,
    train,
)
from ovdet.cli.presets import expand_preset
from ovdet.errors import OvdetError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ovdet", description="open-vocabulary detection and recognition"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    classify.register(sub)
    recognize.register(sub)
    evaluate.register(sub)
    eval_ovsam.register(sub)
    shapes.register(sub)
    demo.register(sub)
    detect.register(sub)
    label.register(sub)
    export.register(sub)
    train.register(sub)
    cache.register(sub)
    models.register(sub)
    index.register(sub)
    serve.register(sub)
    return parser


# options whose value may start with a minus sign (a box partly left of or above the image)
_COORDINATE_OPTIONS = ("--boxes", "--points", "--box")


def attach_coordinates(argv: list[str]) -> list[str]:
    """`--boxes -5,-5,100,100` as `--boxes=-5,-5,100,100`: argparse takes a value that starts
    with "-" for an option unless it is a single negative number."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if token in _COORDINATE_OPTIONS and value[:1] == "-" and value[1:2] in "0123456789.":
            out.append(f"{token}={value}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = attach_coordinates(list(sys.argv[1:] if argv is None else argv))
    try:
        argv, preset = expand_preset(argv)
    except OvdetError as e:
        print(f"ovdet: error: {e}", file=sys.stderr)
        return 2
    if argv[:1] == ["train"] and "--print-config" in argv:
        return print_config(build_parser(), argv, preset)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    if not args.verbose and args.command not in ("eval", "models"):  # these load no model
        # ovdet shows its own progress; transformers' per-load bars are noise
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        return int(args.run(args) or 0)
    except OvdetError as e:
        print(f"ovdet: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file system refusal: read-only folder, disk full, a file for a folder
        print(f"ovdet: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ovdet: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:  # torch.OutOfMemoryError is a RuntimeError
        if not out_of_memory(e):
            raise
        print(f"ovdet: error: {memory_line(e)}", file=sys.stderr)
        return 2


def out_of_memory(e: BaseException) -> bool:
    """Whether `e` is an allocation failure (a GPU's or the CPU allocator's)."""
    text = str(e)
    return isinstance(e, MemoryError) or "out of memory" in text or "can't allocate" in text


def memory_line(e: BaseException) -> str:
    """One line for an allocation failure: what failed and what to lower."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return (
        f"out of memory ({first[:160]}); lower --batch-size, use a smaller model, or "
        "--precision bf16"
    )


def print_config(parser: argparse.ArgumentParser, argv: list[str], preset: dict | None) -> int:
    """Print the options a `train` command line resolves to (JSON; the options it needs but
    lacks shown as <required>), the preset's description and differences, and exit."""
    import json

    argv = [a for a in argv if a != "--print-config"]
    command = argv[1] if len(argv) > 1 else ""
    sub = _subparser(_subparser(parser, "train"), command)
    if sub is None:
        message = "--print-config goes with `ovdet train vild|rkd|codet`"
        print(f"ovdet: error: {message}", file=sys.stderr)
        return 2
    missing = []
    for action in sub._actions:
        if action.required and not any(o in argv for o in action.option_strings):
            missing += [action.option_strings[0], "<required>"]
    args = parser.parse_args([*argv, *missing])
    skip = {"run", "command", "train_command", "verbose", "preset", "print_config"}
    config = {k: v for k, v in vars(args).items() if k not in skip}
    if preset is not None:
        config = {"preset": {k: preset.get(k) for k in ("description", "differs")}} | config
    print(json.dumps(config, indent=1, default=str))
    return 0


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def os_error_line(e: OSError) -> str:
    """One line naming the path and the reason of a file-system error."""
    reason = e.strerror or str(e) or type(e).__name__
    paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{reason}: {' -> '.join(paths)}" if paths else reason


if __name__ == "__main__":
    sys.exit(main())
