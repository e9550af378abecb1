import json

import pytest
import torch

from ovdet.errors import FormatError
from ovdet.io.atomic import atomic_open, write_json
from ovdet.io.coco import check_results, coco_to_regions, read_boxes, read_json, regions_to_coco
from ovdet.ops.masks import rle_decode
from ovdet.types import Regions


def test_regions_to_coco_round_trip(tmp_path):
    masks = torch.zeros(2, 20, 30, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    r = Regions(
        torch.tensor([[3.0, 2, 9, 5], [10, 10, 20, 15]]),
        (20, 30),
        scores=torch.tensor([0.9, 0.4]),
        labels=torch.tensor([1, 0]),
        masks=masks,
    )
    entries = regions_to_coco(r, image_id=7, category_ids=[5, 11])
    assert entries[0]["bbox"] == [3, 2, 6, 3] and entries[0]["category_id"] == 11
    assert entries[1]["category_id"] == 5 and entries[1]["score"] == 0.4
    assert torch.equal(rle_decode(entries[0]["segmentation"]), masks[0])
    back = coco_to_regions(entries, (20, 30), category_ids=[5, 11])
    assert back.labels.tolist() == [1, 0] and torch.equal(back.masks, masks)
    torch.testing.assert_close(back.xyxy, r.xyxy)
    torch.testing.assert_close(back.scores, r.scores)
    with pytest.raises(FormatError, match="unknown category_id 11"):
        coco_to_regions(entries, (20, 30), category_ids=[5])
    write_json(tmp_path / "r.json", entries)
    assert torch.allclose(read_boxes(tmp_path / "r.json"), r.xyxy)


def test_boxes_from_coco_dataset_and_xyxy(tmp_path):
    ds = {
        "images": [{"id": 1, "file_name": "a/x.jpg"}, {"id": 2, "file_name": "y.jpg"}],
        "annotations": [
            {"image_id": 2, "bbox": [1, 2, 3, 4]},
            {"image_id": 1, "bbox": [0, 0, 5, 5]},
        ],
    }
    write_json(tmp_path / "ds.json", ds)
    assert read_boxes(tmp_path / "ds.json", "photos/y.jpg").tolist() == [[1, 2, 4, 6]]
    with pytest.raises(FormatError, match="2 images"):
        read_boxes(tmp_path / "ds.json")
    write_json(tmp_path / "b.json", {"xyxy": [[1, 2, 3, 4]]})
    assert read_boxes(tmp_path / "b.json").tolist() == [[1, 2, 3, 4]]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"a": 1}', "expected a COCO results list"),
        ('[{"image_id": 1, "bbox": [1, 2, 3]}]', r"entry 0 has bbox \[1, 2, 3\]"),
        (
            '[{"image_id": 1, "bbox": [1, 2, 3, 4]}, {"bbox": [1, 1, 1, 1]}]',
            "entry 1 lacks 'image_id'",
        ),
        ('[{"image_id": 1, "bbox": [1, 2, -3, 4]}]', "negative width"),
        ('[{"image_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}]', "score"),
        (
            '[{"image_id": 1, "bbox": [1, 2, 3, 4]}, {"image_id": 2, "bbox": [1, 2, 3, 4]}]',
            "2 images",
        ),
        ('{"xyxy": [[1, 2, 3]]}', "xyxy"),
    ],
)
def test_malformed_json(tmp_path, content, message):
    (tmp_path / "f.json").write_text(content)
    with pytest.raises(FormatError, match=message):
        read_boxes(tmp_path / "f.json")


def test_json_with_a_byte_order_mark_and_non_ascii_reads_as_utf8(tmp_path):
    """Files saved by Windows tools start with a BOM; names may be any language."""
    f = tmp_path / "gt.json"
    f.write_bytes("\ufeff".encode() + json.dumps({"n": "猫"}, ensure_ascii=False).encode())
    assert read_json(f) == {"n": "猫"}


def test_missing_file_and_non_list():
    with pytest.raises(FormatError, match="not found"):
        read_json("/nonexistent/f.json")
    with pytest.raises(FormatError, match="must be a JSON list"):
        check_results({"a": 1})


def test_atomic_write_keeps_old_content_on_failure(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write('{"v": 2, "broken')
        raise RuntimeError("crash mid-write")
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.parametrize(
    "query, names, want",
    [
        ("1.png", ["11.png", "1.png"], 1),
        ("k.png", ["images/ok.png"], None),
        ("val/images/000001.png", ["images/000001.png", "images/000011.png"], 0),
        ("000001.png", ["images/000001.png"], 0),
        ("a.jpg", ["a.png"], 0),  # the stem, when nothing closer names it
        ("x/a.png", ["a.png", "a.jpg"], 0),
        ("a.gif", ["a.png", "a.jpg"], "matches 2 images"),
        ("b.png", ["x/b.png", "y/b.png"], "matches 2 images"),
    ],
)
def test_match_name_is_exact_first_never_a_substring(query, names, want):
    from ovdet.io.coco import match_name

    if isinstance(want, str):
        with pytest.raises(FormatError, match=want):
            match_name(query, names)
    else:
        assert match_name(query, names) == want


def test_box_files_for_other_images_are_refused(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"image_id": "o.png", "bbox": [1, 1, 4, 4]}]))
    with pytest.raises(FormatError, match="none named like 'k.png'"):
        read_boxes(other, image_name="k.png")
    several = tmp_path / "several.json"
    several.write_text(
        json.dumps([{"image_id": n, "bbox": [1, 1, 4, 4]} for n in ("a.png", "b.png", "11.png")])
    )
    with pytest.raises(FormatError, match="none named like '1.png'"):
        read_boxes(several, image_name="1.png")
    assert read_boxes(several, image_name="imgs/11.png").tolist() == [[1.0, 1.0, 5.0, 5.0]]
    dataset = tmp_path / "d.json"
    dataset.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "images/ok.png"}],
                "annotations": [{"image_id": 1, "bbox": [0, 0, 2, 2]}],
            }
        )
    )
    with pytest.raises(FormatError, match="no image is named like 'k.png'"):
        read_boxes(dataset, image_name="k.png")
    one_id = tmp_path / "one.json"  # one image with a numeric id: its boxes, whatever the name
    one_id.write_text(json.dumps([{"image_id": 7, "bbox": [0, 0, 2, 2]}]))
    assert len(read_boxes(one_id, image_name="x.png")) == 1
