"""Every `ovdet ...` command shown in the README and in docs/ parses with ovdet's own parser
(a renamed or removed option fails here, not in a reader's terminal)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ovdet.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shown_commands(text: str) -> list[list[str]]:
    """The `ovdet` command lines in a page's ```bash blocks, as shell tokens (continuations
    joined, comments dropped, split at && || | ;, a block's NAME="..." variables expanded):
    `ovdet`, `python -m ovdet` and `torchrun ... -m ovdet` alike."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        names: dict[str, list[str]] = {}
        for line in block.replace("\\\n", " ").splitlines():
            assigned = re.match(r"^(\w+)=(.*)$", line.strip())
            if assigned:
                names["$" + assigned.group(1)] = shlex.split(assigned.group(2))[0].split()
                continue
            lex = shlex.shlex(line, posix=True, punctuation_chars=True)
            lex.whitespace_split = True
            part: list[str] = []
            for token in [*lex, "&&"]:
                if token in ("&&", "||", "|", ";", "&"):
                    if _ovdet_at(part) is not None:
                        found.append(part)
                    part = []
                else:
                    part += names.get(token, [token])
    return found


def _ovdet_at(tokens: list[str]) -> int | None:
    """Where the ovdet command starts: `ovdet` as the command, or after `-m`."""
    for i, t in enumerate(tokens):
        if t == "ovdet" and (i == 0 or tokens[i - 1] == "-m"):
            return i
    return None


def ovdet_args(tokens: list[str]) -> list[str] | None:
    """The arguments after `ovdet` (None for a line with placeholders: "...", "<...>")."""
    if any("..." in t or t.startswith("<") for t in tokens):
        return None
    tokens = tokens[_ovdet_at(tokens) + 1 :]
    args, optional = [], 0
    for t in tokens:  # "[--flag value]": optional parts are shown in brackets; drop them
        if t.startswith("["):
            optional += 1
        if not optional:  # a CUDA device is checked against this machine's torch: not syntax
            args.append("cpu" if args[-1:] == ["--device"] else t)
        if t.endswith("]") and optional:
            optional -= 1
    return args


CASES = [
    (page.name, command)
    for page in PAGES
    for command in shown_commands(page.read_text())
    if ovdet_args(command) is not None
]


def test_the_pages_show_commands():
    assert len(CASES) > 80  # the extraction found them (99 now; a broken regex finds none)


@pytest.mark.parametrize("page, command", CASES, ids=[f"{p}:{i}" for i, (p, _) in enumerate(CASES)])
def test_every_shown_command_parses(page, command, capsys):
    args = ovdet_args(command)
    try:
        if "--print-config" in args:  # main fills the required options it lacks, then prints
            from ovdet.cli.main import main

            assert main(args) == 0
        else:
            build_parser().parse_args(args)
    except SystemExit:
        shown = " ".join(command)
        pytest.fail(f"{page}: `{shown}` does not parse: {capsys.readouterr().err.strip()}")
