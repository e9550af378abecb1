"""Papers' training configurations as data: `ovdet train vild --preset vild-r50-fpn-lvis ...`.

A preset is a JSON file (bundled under `resources/presets/`, or any path) naming its command,
its options as they are typed, what it stands for and where ovdet's form differs from the
paper's code. `expand_preset` puts the options right after the command, so flags the user types
override them (argparse keeps the last value); `--print-config` prints the options a command
line resolves to, and exits.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from ovdet.errors import OvdetError


def preset_names() -> list[str]:
    folder = resources.files("ovdet") / "resources" / "presets"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_preset(name: str) -> dict[str, Any]:
    """A bundled preset by name, or a preset file by path."""
    path = Path(name)
    if not path.is_file():
        if name not in preset_names():
            raise OvdetError(
                f"unknown preset {name!r}; bundled: {', '.join(preset_names())} (or a JSON file)"
            )
        path = Path(str(resources.files("ovdet") / "resources" / "presets" / f"{name}.json"))
    try:
        preset = json.loads(path.read_text(encoding="utf-8-sig"))
        assert isinstance(preset["command"], str) and isinstance(preset["options"], dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise OvdetError(
            f"{path} is not a preset (a JSON object with command and options)"
        ) from None
    return preset


def preset_flags(options: dict[str, Any]) -> list[str]:
    """{"--lsj": true, "--side": "1024"} -> ["--lsj", "--side", "1024"] (false: left out)."""
    flags: list[str] = []
    for flag, value in options.items():
        if value is True:
            flags.append(flag)
        elif value is not False and value is not None:
            flags += [flag, str(value)]
    return flags


def expand_preset(argv: list[str]) -> tuple[list[str], dict[str, Any] | None]:
    """`train CMD ... --preset NAME ...` -> `train CMD <preset flags> ...` and the preset."""
    if len(argv) < 2 or argv[0] != "train" or "--preset" not in argv:
        return argv, None
    i = argv.index("--preset")
    if i + 1 >= len(argv):
        raise OvdetError("--preset needs a name: " + ", ".join(preset_names()))
    preset = load_preset(argv[i + 1])
    rest = argv[:i] + argv[i + 2 :]
    if preset["command"] != rest[1]:
        raise OvdetError(
            f"preset {argv[i + 1]!r} is for `ovdet train {preset['command']}`, not {rest[1]!r}"
        )
    return [*rest[:2], *preset_flags(preset["options"]), *rest[2:]], preset
