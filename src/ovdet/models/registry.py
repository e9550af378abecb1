"""Model name aliases and the one place that turns a failed weight lookup into a one-line error."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ovdet.errors import OvdetError, WeightsNotFoundError

T = TypeVar("T")

CLIP_ALIASES: dict[str, str] = {
    "clip-b32": "openai/clip-vit-base-patch32",
    "clip-b16": "openai/clip-vit-base-patch16",
    "clip-l14": "openai/clip-vit-large-patch14",
    "clip-l14-336": "openai/clip-vit-large-patch14-336",
}


def resolve(name: str, aliases: dict[str, str]) -> str:
    """Alias -> hub id; hub ids and folders pass through unchanged."""
    return aliases.get(name, name)


def looks_like_path(name: str) -> bool:
    """True for names that are clearly local paths (absolute, ./, ../, ~ or an existing folder)."""
    return name.startswith((os.sep, ".", "~")) or Path(name).exists()


def stored_name(name: str | os.PathLike) -> str:
    """How a checkpoint records a model it builds on: an existing local path as its absolute
    path (the checkpoint then loads from any working directory); an alias, hub id or bundled
    name as given."""
    path = Path(str(name)).expanduser()
    return str(path.resolve()) if path.exists() else str(name)


def resolve_stored(name: str, folder: str | os.PathLike) -> str:
    """A recorded model name, loadable now: as recorded, or relative to the checkpoint's own
    `folder` when it is a relative path that exists from there and not from here (a run
    recorded before names were stored absolute, or a folder shipped beside its spec)."""
    path = Path(str(name))
    beside = Path(folder) / path
    if not path.is_absolute() and not path.exists() and beside.exists():
        return str(beside)
    return str(name)


def model_type_of(target: str) -> str | None:
    """The `model_type` in a checkpoint's config.json (a hub id or a folder)."""
    import json

    from transformers.utils import cached_file

    from ovdet.errors import FormatError

    path = cached_file(target, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path} is not valid JSON: {e}") from None
    return config.get("model_type") if isinstance(config, dict) else None


def load_weights(load: Callable[[str], T], name: str, aliases: dict[str, str], what: str) -> T:
    """Call `load(resolved_name)`; a missing folder or unreachable hub id becomes one line.

    Args:
        load: calls transformers' `from_pretrained` (or similar) on a hub id or folder.
        name: alias, hub id or local folder.
        aliases: the alias table of this kind of model.
        what: "CLIP", "SAM", ... for the message.
    """
    target = resolve(name, aliases)
    if looks_like_path(target):
        folder = Path(target).expanduser()
        if not folder.is_dir():
            raise WeightsNotFoundError(f"{what} model folder not found: {folder}")
        target = str(folder)
    try:
        return load(target)
    except OvdetError:
        raise
    except OSError as e:
        hint = (
            f"the folder {target} lacks model files ({(str(e).splitlines() or [''])[0][:160]})"
            if Path(target).is_dir()
            else f"{what} weights {target!r} are not cached and the hub is unreachable; "
            f"download them once with `hf download {target}` (cache: $HF_HOME), "
            f"or pass a local folder. Known aliases: {', '.join(sorted(aliases))}"
        )
        raise WeightsNotFoundError(hint) from None
    except Exception as e:
        if not Path(target).is_dir():
            raise
        # a local folder with a malformed config.json, truncated or mismatched weights
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise WeightsNotFoundError(
            f"cannot load {what} from the folder {target}: {type(e).__name__}: {reason}"
        ) from None
