"""bf16 inference (`ViLDDetector(precision="bf16")`, `ovdet detect --precision bf16`) against fp32
on the shapes world: the same objects found with the same names, boxes and scores within bf16's
rounding. Measured on det-val (500 scenes, shapes-vild): AP50 63.3 fp32, 62.6 bf16."""

import pytest
import torch
from PIL import Image

from ovdet.data.shapes.generate import WorldConfig, scene_for
from ovdet.errors import ConfigError
from ovdet.methods.vild.detector import ViLDDetector
from ovdet.ops.boxes import box_iou

NAMES = "circle, square, triangle, star, hexagon, cross, moon, ring, trapezoid, parallelogram"


def test_bf16_finds_what_fp32_finds(tmp_path):
    fp32 = ViLDDetector("shapes-vild", text_cache=None)
    bf16 = ViLDDetector("shapes-vild", text_cache=None, precision="bf16")
    ious, score_gaps, differs = [], [], False
    for i in range(12):
        path = tmp_path / f"{i}.png"
        Image.fromarray(scene_for(0, "det-val", i, WorldConfig()).image).save(path)
        a, b = fp32.detect(str(path), NAMES), bf16.detect(str(path), NAMES)
        assert b.scores.dtype == torch.float32 and b.xyxy.dtype == torch.float32
        differs |= len(a) != len(b) or not torch.equal(a.scores, b.scores)
        sure = a[a.scores >= 0.3]
        for k in range(len(sure)):
            same = b.labels == sure.labels[k]
            assert same.any(), f"scene {i}: bf16 lost the {sure.labels[k]} at {sure.xyxy[k]}"
            overlap = box_iou(sure.xyxy[k : k + 1], b.xyxy[same])[0]
            j = overlap.argmax()
            ious.append(overlap[j].item())
            score_gaps.append((b.scores[same][j] - sure.scores[k]).abs().item())
    assert differs  # autocast ran: bf16 rounding shows somewhere
    assert len(ious) > 30
    # measured on these 12 scenes: 56 detections, IoU min 0.63 and mean 0.98; score gaps median
    # 0.003, 90th percentile 0.014 (the largest, 0.22, a near-duplicate box of the same name)
    assert min(ious) >= 0.5 and sum(ious) / len(ious) >= 0.95, (min(ious), sum(ious) / len(ious))
    gaps = torch.tensor(score_gaps)
    assert gaps.median() <= 0.01 and gaps.quantile(0.9) <= 0.05, gaps


def test_fp16_on_a_cpu_is_one_line():
    with pytest.raises(ConfigError, match="CUDA"):
        ViLDDetector("shapes-vild", text_cache=None, precision="fp16")


@pytest.mark.slow(seconds=25)
def test_compiled_backbone_finds_what_eager_finds(tmp_path):
    """`ViLDDetector(compile=True)` (`ovdet detect --compile`): the backbone through inductor
    gives the eager detections (measured: identical boxes and scores on these scenes)."""
    eager = ViLDDetector("shapes-vild", text_cache=None)
    compiled = ViLDDetector("shapes-vild", text_cache=None, compile=True)
    assert compiled.model.backbone._compiled_call_impl is not None  # compile() took
    for i in range(3):
        image = torch.from_numpy(scene_for(0, "det-val", i, WorldConfig()).image).permute(2, 0, 1)
        a, b = eager.detect(image, NAMES), compiled.detect(image, NAMES)
        assert torch.equal(a.labels, b.labels) and len(a) > 0
        torch.testing.assert_close(b.scores, a.scores, atol=1e-4, rtol=0)
        torch.testing.assert_close(b.xyxy, a.xyxy, atol=1e-2, rtol=0)
