"""ovdet checkpoints on the Hugging Face Hub: a repo holding a checkpoint folder (spec.json and
model.safetensors) loads by its id, through huggingface_hub's cache (HF_HUB_CACHE) and offline
mode (HF_HUB_OFFLINE=1 reads the cache alone); `push` uploads a run with a model card.

A hub id whose repo has no spec.json (a CLIP or a SAM) is left to transformers."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ovdet.errors import OvdetError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SKIPPED = {"train_state.pt"}  # resume state: not part of a published model


@functools.lru_cache(maxsize=64)  # one load asks several times (kind, model, its parts)
def hub_checkpoint(name: str | os.PathLike) -> Path | None:
    """The local snapshot of the ovdet checkpoint repo `name` ("user/repo"), downloaded or from
    the cache; None when `name` is a local path, not a hub id, or a repo without spec.json (a
    transformers model), or when neither the Hub nor the cache has it. Kept for the process."""
    text = str(name)
    if not HUB_ID.match(text) or Path(text).exists():
        return None
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        hf_hub_download(text, "spec.json")
        return Path(snapshot_download(text))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError):
        return None


def model_card(folder: Path, spec: dict[str, Any], repo_id: str) -> str:
    """README.md for a pushed run: what it is, its vocabulary split, how to load it, and the
    metrics its run wrote (report.json / metrics.json / results.json)."""
    from ovdet.models.bundled import spec_kind

    kind = spec_kind(spec) or "unknown"
    lines = [
        "---",
        "library_name: ovdet",
        "tags: [ovdet, open-vocabulary-detection, " + kind + "]",
        "---",
        "",
        f"# {repo_id}",
        "",
        f"An ovdet {kind} checkpoint (spec.json + model.safetensors).",
        "",
        "```python",
        "import ovdet",
        f'model = ovdet.load("{repo_id}")',
        "```",
        "",
        f'`ovdet detect photo.jpg --model {repo_id} --vocab "cat, traffic cone"`',
        "",
    ]
    base = spec.get("base_names") or spec.get("base_ids")
    if not base and kind == "ovsam":  # trained before specs named them: the shapes world's
        from ovdet.methods.ovsam.clip2sam import shapes_base_names

        base = shapes_base_names()
    if base:
        lines += ["## Training vocabulary", "", f"Base classes ({len(base)}): "
                  + ", ".join(map(str, base[:200])), ""]  # fmt: skip
    for name in ("metrics.json", "report.json", "results.json"):
        if (folder / name).is_file():
            text = json.dumps(json.loads((folder / name).read_text()), indent=1)[:4000]
            lines += [f"## {name}", "", "```json", text, "```", ""]
    config = {k: v for k, v in spec.items() if isinstance(v, (int, float, str, bool))}
    lines += ["## Configuration", "", "```json", json.dumps(config, indent=1), "```", ""]
    return "\n".join(lines)


def push(run: str | os.PathLike, repo_id: str, private: bool = False, api: Any = None) -> str:
    """Upload the checkpoint folder `run` (without its resume state) to `repo_id` with a
    generated model card; an Open-Vocabulary SAM run takes its SAM2CLIP run along (sam2clip/).
    Returns the commit URL. `api` is an `HfApi` (its token from the usual places)."""
    from ovdet.models.bundled import checkpoint_folder

    folder = checkpoint_folder(run)
    if not (folder / "spec.json").is_file() or not (folder / "model.safetensors").is_file():
        raise OvdetError(
            f"{run} is not an ovdet checkpoint folder (spec.json and model.safetensors); push "
            "a trained run"
        )
    if not HUB_ID.match(repo_id):
        raise OvdetError(f"{repo_id!r} is not a hub repo id (user/name)")
    spec = json.loads((folder / "spec.json").read_text())
    with tempfile.TemporaryDirectory(prefix="ovdet-push-") as tmp:
        stage = Path(tmp)
        for item in folder.iterdir():
            if item.is_file() and item.name not in SKIPPED:
                shutil.copy2(item, stage / item.name)
        if spec.get("kind") == "ovsam":
            shutil.copytree(checkpoint_folder(spec["sam2clip"]), stage / "sam2clip",
                            ignore=shutil.ignore_patterns(*SKIPPED, "teacher-cache"))  # fmt: skip
            spec = {**spec, "sam2clip": "sam2clip"}  # found beside spec.json when loaded
            (stage / "spec.json").write_text(json.dumps(spec, indent=1))
        (stage / "README.md").write_text(model_card(folder, spec, repo_id))
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi()
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(stage), repo_id=repo_id)
    return str(getattr(info, "commit_url", info))
