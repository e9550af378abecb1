"""ovdet checkpoints on the Hugging Face Hub, offline: a repo laid out in huggingface_hub's
cache loads by its id (`ovdet.load`, `ovdet detect --model user/repo`) exactly as the folder
does; a hub repo without spec.json is left to transformers; `ovdet push` stages a run without its
resume state, with a model card, and an Open-Vocabulary SAM with its SAM2CLIP run beside it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import ovdet
from ovdet.cli.main import main
from ovdet.models.bundled import checkpoint_folder
from ovdet.models.hub import hub_checkpoint, push

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty huggingface_hub cache under tmp_path, offline; `add(repo, folder)` lays a repo
    out in it (refs/main -> snapshots/<commit>/ files) as a download would."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def add(repo: str, folder: Path) -> None:
        root = cache / f"models--{repo.replace('/', '--')}"
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text(COMMIT)
        shutil.copytree(folder, root / "snapshots" / COMMIT)

    return add


def _scene():
    from ovdet.data.shapes.generate import WorldConfig, scene_for

    return torch.from_numpy(scene_for(0, "det-val", 2, WorldConfig()).image).permute(2, 0, 1)


def test_a_cached_hub_repo_loads_by_its_id(hub_cache, tmp_path, capsys):
    hub_cache("alice/shapes-vild", checkpoint_folder("shapes-vild"))
    vocab = "circle, star, trapezoid"
    want = ovdet.load("shapes-vild", text_cache=None).detect(_scene(), vocab)
    got = ovdet.load("alice/shapes-vild", text_cache=None).detect(_scene(), vocab)
    assert len(want) > 0 and torch.equal(got.xyxy, want.xyxy)
    assert torch.equal(got.labels, want.labels) and torch.equal(got.scores, want.scores)
    from PIL import Image

    Image.fromarray(_scene().permute(1, 2, 0).numpy()).save(tmp_path / "scene.png")
    args = ["detect", str(tmp_path / "scene.png"), "--model", "alice/shapes-vild", "--vocab",
            vocab, "--no-cache", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(args) == 0
    assert len(json.loads((tmp_path / "o" / "detections.json").read_text())) == len(want)


def test_repos_without_spec_json_or_not_cached_are_left_to_transformers(hub_cache, tmp_path):
    config = tmp_path / "clip-like"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"model_type": "clip"}))
    hub_cache("bob/some-clip", config)
    assert hub_checkpoint("bob/some-clip") is None  # no spec.json: a transformers model
    assert hub_checkpoint("bob/not-cached") is None  # offline and not in the cache
    assert hub_checkpoint(str(checkpoint_folder("shapes-vild"))) is None  # a local folder


class _RecordingApi:
    """Stands in for HfApi: keeps a copy of what would be uploaded."""

    def __init__(self, keep: Path) -> None:
        self.keep, self.calls = keep, []

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create", repo_id, private))

    def upload_folder(self, folder_path, repo_id):
        shutil.copytree(folder_path, self.keep)
        self.calls.append(("upload", repo_id))
        return type("Info", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/x"})()


def test_push_stages_the_run_with_a_card_and_its_sam2clip(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(checkpoint_folder("shapes-ovsam"), run)
    (run / "train_state.pt").write_bytes(b"resume state")
    api = _RecordingApi(tmp_path / "staged")
    url = push(run, "carol/ovsam", private=True, api=api)
    assert url.endswith("/commit/x") and api.calls[0] == ("create", "carol/ovsam", True)
    staged = tmp_path / "staged"
    assert not (staged / "train_state.pt").exists()
    assert (staged / "sam2clip" / "model.safetensors").is_file()
    assert json.loads((staged / "spec.json").read_text())["sam2clip"] == "sam2clip"
    card = (staged / "README.md").read_text()
    assert 'ovdet.load("carol/ovsam")' in card and "Base classes" in card
    model = ovdet.load(staged, text_cache=None)  # finds its SAM2CLIP beside spec.json
    assert Path(model.sam2clip) == staged / "sam2clip"
    with pytest.raises(ovdet.errors.OvdetError, match="not an ovdet checkpoint"):
        push(tmp_path, "carol/x", api=api)
