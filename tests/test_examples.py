"""The scripts in examples/ run end to end (on the tiny models) and write what they promise."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from conftest import make_image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.slow  # each test runs an example script end to end on the tiny models (6-19 s each under load)


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_label_folder_example(tmp_path, sam_ckpt, gdino_ckpt, tiny_specs):
    from pycocotools.coco import COCO

    photos = tmp_path / "photos"
    (photos / "day2").mkdir(parents=True)
    Image.fromarray(make_image(80, 100, seed=1)).save(photos / "a.png")
    Image.fromarray(make_image(90, 70, seed=2)).save(photos / "day2" / "a.png")
    out = load("label_folder").main([
        str(photos), "--classes", "cat=cat. kitten", "--classes", "remote=remote control",
        "--output", str(tmp_path / "labels"), "--sam-type", tiny_specs[0].name, "--sam-ckpt",
        str(sam_ckpt), "--gdino-type", tiny_specs[1].name, "--gdino-ckpt", str(gdino_ckpt),
    ])
    coco = COCO(str(out / "coco" / "annotations.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cat", "remote"]
    assert sorted(img["file_name"] for img in coco.loadImgs(coco.getImgIds())) == ["a.png", "day2/a.png"]
    assert (out / "overlays" / "a.png").is_file() and (out / "overlays" / "day2" / "a.png").is_file()
    assert "names" in (out / "yolo" / "data.yaml").read_text()
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert coco.annToMask(ann).shape == (coco.imgs[ann["image_id"]]["height"],
                                              coco.imgs[ann["image_id"]]["width"])


def test_segment_example(tmp_path, sam_ckpt, gdino_ckpt, tiny_specs):
    src = tmp_path / "photo.png"
    Image.fromarray(make_image(60, 90, seed=4)).save(src)
    out = load("segment").main([
        str(src), "cat", "--output", str(tmp_path / "overlay.png"), "--sam-type", tiny_specs[0].name,
        "--sam-ckpt", str(sam_ckpt), "--gdino-type", tiny_specs[1].name, "--gdino-ckpt", str(gdino_ckpt),
        "--device", "cpu",
    ])
    assert Image.open(out).size == (90, 60)
