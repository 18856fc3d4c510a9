"""``--format labelstudio`` (issue 29 item 1): tasks with predictions that Label Studio imports,
read back by Label Studio's own SDK (tests/tool-readers.txt): its brush RLE decoder gives our
masks back pixel for pixel, its encoder makes the same bytes, its labelling-config validator
accepts every prediction against the config we write; labels, scores and boxes kept."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from lang_sam.errors import InvalidArgumentError, InvalidMaskError, InvalidRunError
from lang_sam.labeling.formats import largest_polygon, rle_to_mask
from lang_sam.labeling.labelstudio import LOCAL_FILES_PREFIX, brush_rle, image_reference, labeling_config
from lang_sam.labeling.tool_formats import ExportOptions
from tool_readers import H, NAMES, W, shaped_masks, shaped_run, use_readers


@pytest.fixture(scope="module")
def ls():
    """Label Studio's SDK: ``(brush module, LabelInterface)``."""
    use_readers()
    from label_studio_sdk.converter import brush
    from label_studio_sdk.label_interface import LabelInterface

    return brush, LabelInterface


def _decode(brush, region) -> np.ndarray:
    """A brush region's mask as Label Studio's SDK decodes it (the alpha channel of RGBA)."""
    w, h = region["original_width"], region["original_height"]
    return brush.decode_rle(region["value"]["rle"]).reshape(h, w, 4)[:, :, 3] > 0


MASKS = {
    "empty": np.zeros((3, 4), bool),
    "full": np.ones((3, 4), bool),
    "one pixel": np.eye(1, 5, 2, dtype=bool),
    "checkerboard": np.indices((4, 6)).sum(0) % 2 == 1,
    "runs of 2..300 pixels": np.repeat(np.arange(24) % 2 == 1, np.arange(2, 26) * 12)[None],
    "a run over 65536 values": np.ones((1, 40000), bool),
    "runs over 65536, twice": np.concatenate([np.zeros(33000, bool), np.ones(70000, bool)])[None],
}


@pytest.mark.parametrize("name", list(MASKS))
def test_brush_rle_is_label_studio_s_own_encoding(ls, name):
    brush, _ = ls
    mask = MASKS[name]
    ours = brush_rle(mask)
    assert ours == brush.mask2rle(mask.astype(np.uint8) * 255)  # byte for byte, padding included
    assert np.array_equal(brush.decode_rle(ours).reshape(*mask.shape, 4)[:, :, 3] > 0, mask)


def test_brush_rle_refuses_other_than_2d():
    with pytest.raises(InvalidMaskError, match=r"2-D \(H, W\), got shape \(2, 3, 4\)"):
        brush_rle(np.zeros((2, 3, 4), bool))


def _run(tmp_path: Path, export=None):
    run = shaped_run(tmp_path / "out", tmp_path / "images", ["coco", "labelstudio"], export)
    out = tmp_path / "out"
    tasks = json.loads((out / "labelstudio" / "tasks.json").read_text())
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    config = (out / "labelstudio" / "config.xml").read_text()
    return run, tasks, coco, config


def _coco_instances(coco: dict, image_index: int) -> list[dict]:
    image_id = coco["images"][image_index]["id"]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    return [dict(a, name=names[a["category_id"]]) for a in coco["annotations"] if a["image_id"] == image_id]


def test_brush_tasks_read_back_by_label_studio_equal_the_run(ls, tmp_path):
    brush, LabelInterface = ls
    run, tasks, coco, config = _run(tmp_path)
    interface = LabelInterface(config)
    assert len(tasks) == len(coco["images"]) == 2
    for i, task in enumerate(tasks):
        prediction = task["predictions"][0]
        assert interface.validate_prediction(prediction, return_errors=True) == []
        instances = _coco_instances(coco, i)
        masks = [r for r in prediction["result"] if r["type"] == "brushlabels"]
        boxes = [r for r in prediction["result"] if r["type"] == "rectanglelabels"]
        assert len(masks) == len(boxes) == len(instances) == len(shaped_masks(i)[0])  # empty masks too
        for region, box, ann in zip(masks, boxes, instances):
            assert (region["original_width"], region["original_height"]) == (W, H)
            assert np.array_equal(_decode(brush, region), rle_to_mask(ann["segmentation"]))  # pixel for pixel
            assert region["value"]["brushlabels"] == box["value"]["rectanglelabels"] == [ann["name"]]
            assert region["score"] == box["score"] == ann["score"]
            v = box["value"]
            assert [v["x"] * W / 100, v["y"] * H / 100, v["width"] * W / 100, v["height"] * H / 100] == \
                pytest.approx(ann["bbox"], abs=1e-9)
        assert prediction["score"] == pytest.approx(np.mean([a["score"] for a in instances]), abs=1e-6)
    # the summary counts every instance as written: a brush holds any mask
    assert run.summary.export_dropped["labelstudio"] == {} and run.summary.written("labelstudio") == 14


def test_the_config_names_every_class_and_refuses_others(ls, tmp_path):
    _, LabelInterface = ls
    _, tasks, _, config = _run(tmp_path)
    interface = LabelInterface(config)
    assert sorted(interface.get_control("mask").labels) == sorted(NAMES)  # '"stop" & <go>' escaped
    assert sorted(interface.get_control("box").labels) == sorted(NAMES)
    bad = json.loads(json.dumps(tasks[0]["predictions"][0]))
    bad["result"][0]["value"]["brushlabels"] = ["zebra"]
    assert interface.validate_prediction(bad, return_errors=True)


def test_polygons_on_request(ls, tmp_path):
    _, LabelInterface = ls
    run, tasks, coco, config = _run(tmp_path, ExportOptions(shape="polygon"))
    interface = LabelInterface(config)
    assert interface.get_control("mask").tag == "PolygonLabels"
    for i, task in enumerate(tasks):
        prediction = task["predictions"][0]
        assert interface.validate_prediction(prediction, return_errors=True) == []
        polygons = {r["id"]: r for r in prediction["result"] if r["type"] == "polygonlabels"}
        for k, ann in enumerate(_coco_instances(coco, i)):
            poly = largest_polygon(rle_to_mask(ann["segmentation"]))
            if poly is None:  # the speck, the random pixels and the empty mask: a box, no polygon
                assert f"m{k}" not in polygons
                continue
            points = np.array(polygons[f"m{k}"]["value"]["points"]) * [W / 100, H / 100]
            assert np.allclose(points, poly) and polygons[f"m{k}"]["value"]["polygonlabels"] == [ann["name"]]
    # per image: the empty mask; the speck and the random pixels (no outline over 100 pixels)
    assert run.summary.export_dropped["labelstudio"] == {"empty mask": 2, "outline <= 100 px": 4}


@pytest.mark.parametrize("prefix, expected", [
    (None, LOCAL_FILES_PREFIX + "{abs}"),
    ("https://data.example/photos/", "https://data.example/photos/sub/b%20c.png"),
    ("/data/local-files/?d=photos/", "/data/local-files/?d=photos/sub/b%20c.png"),
])
def test_image_references(tmp_path, prefix, expected):
    path = tmp_path / "sub" / "b c.png"
    got = image_reference(path, "sub/b c.png", prefix)
    assert got == expected.format(abs=quote(path.resolve().as_posix().lstrip("/")))


def test_tasks_point_at_the_images(tmp_path):
    _, tasks, coco, _ = _run(tmp_path, ExportOptions(image_prefix="s3://bucket/x/"))
    assert [t["data"]["image"] for t in tasks] == ["s3://bucket/x/a.png", "s3://bucket/x/sub/b%20c.png"]
    assert [im["file_name"] for im in coco["images"]] == ["a.png", "sub/b c.png"]


def test_bad_options_are_refused():
    with pytest.raises(InvalidRunError, match="shape must be one of mask, polygon, got 'brush'"):
        ExportOptions(shape="brush")
    with pytest.raises(InvalidArgumentError, match="got 'box'"):
        labeling_config(["car"], "box")


def test_predict_cli_writes_both_tools(tmp_path, capsys):
    """``lang-sam predict --format labelstudio,cvat --polygons --image-prefix``: the files, the
    flags applied, and the summary naming them."""
    from PIL import Image
    from plugin_engines import moving_clip
    from track_helpers import GREEN, RED, VideoEngines

    from lang_sam.cli import main

    engines = VideoEngines(tmp_path)
    try:
        Image.fromarray(next(moving_clip(1, objects=[RED, GREEN]))).save(tmp_path / "im.png")
        out = tmp_path / "out"
        assert main(["predict", str(tmp_path / "im.png"), "--prompt", "red. green", "--output", str(out),
                     "--format", "labelstudio,cvat", "--polygons", "--image-prefix", "https://h/p/", "-q",
                     *engines.flags()]) == 0
    finally:
        engines.close()
    printed = capsys.readouterr().out
    assert "labelstudio/tasks.json + config.xml, cvat/annotations.xml" in printed
    assert "labelstudio 2 of 2, cvat 2 of 2" in printed
    task, = json.loads((out / "labelstudio" / "tasks.json").read_text())
    assert task["data"]["image"] == "https://h/p/im.png"
    assert sorted(r["type"] for r in task["predictions"][0]["result"]) == ["polygonlabels"] * 2 + ["rectanglelabels"] * 2
    assert "<PolygonLabels" in (out / "labelstudio" / "config.xml").read_text()
    assert (out / "cvat" / "annotations.xml").read_text().count("<polygon ") == 2
