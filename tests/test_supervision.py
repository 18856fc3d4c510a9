"""``to_supervision()``: lang-sam's results as ``supervision.Detections`` (issue 14 item 5).

Fields, dtypes and shapes on crafted detections (dense masks and crops, empty ones included) and
on the tiny models' ``predict`` (with and without ``tile=``); supervision's own COCO export of our
detections against our COCO writer; the README's annotator example, run; the errors.
"""

from __future__ import annotations

import json
import os
import re
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_image
from lang_sam import CropMask, Prediction, TiledPrediction, TileSpec
from lang_sam.errors import InvalidClassesError, LangSAMError, SupervisionNotInstalledError
from lang_sam.labeling.formats import CocoBuilder, coco_image_record, rle_to_mask

if os.environ.get("CI"):
    import supervision as sv  # the README's test command installs it: never skipped in CI
else:
    # 0.30: the first whose as_coco writes mask areas (the conversion itself works from 0.28)
    sv = pytest.importorskip("supervision", minversion="0.30",
                             reason='needs supervision>=0.30: pip install "supervision>=0.30"')

ROOT = Path(__file__).resolve().parents[1]
H, W = 30, 40


def crafted_masks() -> np.ndarray:
    """Four masks of a 30x40 image: a block, one touching the bottom-right corner, an empty one,
    and one with a hole and two parts (so it is not a box)."""
    m = np.zeros((4, H, W), bool)
    m[0, 2:10, 3:12] = True
    m[1, 22:30, 31:40] = True
    m[3, 5:20, 20:30] = True
    m[3, 9:12, 23:26] = False
    m[3, 25:28, 2:6] = True
    return m


BOXES = torch.tensor([[3.0, 2.0, 12.0, 10.0], [31.5, 22.25, 40.0, 30.0], [0.0, 0.0, 1.0, 1.0],
                      [2.0, 5.0, 30.0, 28.0]])
PHRASES = ["cat", "remote control", "cat", "dog"]
LOGITS = torch.tensor([0.5, 0.61, 0.7, 0.33])
IOU = torch.tensor([0.9, 0.8, 0.1, 0.77])


def crafted(kind: str):
    m = crafted_masks()
    if kind == "dense":
        return Prediction(torch.from_numpy(m), BOXES, PHRASES, LOGITS, iou_scores=IOU)
    return TiledPrediction([CropMask.from_dense(x) for x in m], BOXES, PHRASES, LOGITS, iou_scores=IOU,
                           image_size=(H, W))


def check_fields(det, pred, dense: np.ndarray) -> None:
    """Everything but the mask's form: boxes, scores, ids, names, SAM's scores, the masks' pixels."""
    n = len(pred.phrases)
    assert isinstance(det, sv.Detections) and len(det) == n
    assert det.xyxy.dtype == np.float32 and det.xyxy.shape == (n, 4)
    assert np.array_equal(det.xyxy, pred.boxes.numpy())
    assert det.confidence.dtype == np.float32 and np.array_equal(det.confidence, pred.logits.numpy())
    assert det.class_id.dtype == np.int64 and det.class_id.shape == (n,)
    firsts = []
    for p in pred.phrases:
        if p not in firsts:
            firsts.append(p)
    assert det.class_id.tolist() == [firsts.index(p) for p in pred.phrases]
    assert list(det.data["class_name"]) == pred.phrases
    assert np.array_equal(det.data["iou_score"], pred.iou_scores.numpy())
    assert det.data["iou_score"].dtype == np.float32
    assert det.mask.shape == (n, *dense.shape[1:]) and det.mask.dtype == np.bool_
    assert np.array_equal(np.asarray(det.mask), dense)
    assert np.array_equal(det.mask.area if isinstance(det.mask, sv.CompactMask) else det.mask.sum((1, 2)),
                          dense.sum((1, 2)))


# kind of result, compact argument -> the mask's form supervision gets
FORMS = [
    ("dense", None, np.ndarray),
    ("dense", False, np.ndarray),
    ("dense", True, "CompactMask"),
    ("crops", None, "CompactMask"),
    ("crops", True, "CompactMask"),
    ("crops", False, np.ndarray),
]


@pytest.mark.parametrize("kind,compact,form", FORMS)
def test_fields_dtypes_and_shapes(kind, compact, form):
    pred = crafted(kind)
    det = pred.to_supervision(compact=compact)
    form = sv.CompactMask if form == "CompactMask" else form
    assert type(det.mask) is form
    check_fields(det, pred, crafted_masks())


def test_compact_masks_keep_each_crop_where_it_is():
    """supervision's own view of every crop (its offset and pixels) is the crop's; an empty crop
    is stored as supervision stores one (1x1, all False)."""
    pred = crafted("crops")
    cm = pred.to_supervision().mask
    assert cm.shape == (len(pred.masks), H, W)
    for i, crop in enumerate(pred.masks):
        if crop.area == 0:
            assert not cm.crop(i).any() and cm.crop(i).shape == (1, 1)
            continue
        assert tuple(cm.offsets[i]) == (crop.x0, crop.y0)
        assert np.array_equal(cm.crop(i), crop.mask)
        assert np.array_equal(cm[i], crop.to_dense())
    # A detection of supervision's own filtering keeps its mask (CompactMask indexes like an array).
    kept = pred.to_supervision()[np.array([False, True, False, True])]
    assert np.array_equal(np.asarray(kept.mask), crafted_masks()[[1, 3]])


@pytest.mark.parametrize("kind", ["dense", "crops"])
def test_empty_results(kind):
    if kind == "dense":
        pred = Prediction(torch.zeros((0, H, W), dtype=torch.bool), torch.zeros((0, 4)), [], torch.zeros(0))
    else:
        pred = TiledPrediction([], torch.zeros((0, 4)), [], torch.zeros(0), iou_scores=torch.zeros(0),
                               image_size=(H, W))
    det = pred.to_supervision()
    assert len(det) == 0 and det.is_empty()
    assert det.xyxy.shape == (0, 4) and det.xyxy.dtype == np.float32
    assert det.mask.shape == (0, H, W) and det.confidence.shape == (0,) and det.class_id.shape == (0,)
    assert len(det.data["class_name"]) == 0
    assert isinstance(det.mask, sv.CompactMask if kind == "crops" else np.ndarray)


def test_classes_set_the_ids():
    pred = crafted("dense")
    det = pred.to_supervision(classes=["dog", "cat", "remote control", "bird"])
    assert det.class_id.tolist() == [1, 2, 1, 0]
    assert list(det.data["class_name"]) == PHRASES


@pytest.mark.parametrize("classes,unknown,message", [
    (["cat", "dog"], ["remote control"], r"phrases \['remote control'\] are not in classes"),
    ([], ["cat", "remote control", "dog"], "are not in classes"),
    ("cat", [], "must be a list of class names"),
    (["cat", 3], [], "must be a list of class names"),
    (["cat", "dog", "cat", "remote control"], [], r"must be distinct, but \['cat'\]"),
])
def test_bad_classes_raise_a_typed_error(classes, unknown, message):
    with pytest.raises(InvalidClassesError, match=message) as info:
        crafted("crops").to_supervision(classes=classes)
    assert isinstance(info.value, ValueError) and isinstance(info.value, LangSAMError)
    assert info.value.unknown == unknown and info.value.classes == classes


def test_without_supervision_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # what `import supervision` sees uninstalled
    with pytest.raises(SupervisionNotInstalledError, match=re.escape('pip install "supervision>=0.28"')) as info:
        crafted("dense").to_supervision()
    assert isinstance(info.value, ImportError) and info.value.found is None


def test_the_supervision_groundingdino_pins_is_refused(monkeypatch):
    """groundingdino-py 0.4.0 pins supervision==0.6.0, which has Detections but no CompactMask."""
    old = types.ModuleType("supervision")
    old.Detections = sv.Detections
    old.__version__ = "0.6.0"
    monkeypatch.setitem(sys.modules, "supervision", old)
    monkeypatch.setattr("importlib.metadata.version", lambda name: "0.6.0")
    with pytest.raises(SupervisionNotInstalledError, match=r"found supervision 0\.6\.0") as info:
        crafted("crops").to_supervision()
    assert info.value.found == "0.6.0" and info.value.required == "supervision>=0.28"


# ------------------------------------------------------------------------------------------
# On the tiny models
# ------------------------------------------------------------------------------------------

SMALL = make_image(90, 150, seed=31)   # as in test_tiling: two 96-px tiles
TILE = TileSpec(96, 0.25)
PROMPT = "cat. remote control"


@pytest.fixture(scope="module")
def predictions(model):
    plain = model.predict(SMALL, PROMPT)
    tiled = model.predict(SMALL, PROMPT, tile=TILE)
    assert len(plain.phrases) > 1 and len(tiled.phrases) > 1, "the tiny models found too little to test"
    return {"dense": plain, "crops": tiled}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dense", "crops"])
def test_model_results(predictions, kind):
    pred = predictions[kind]
    det = pred.to_supervision()
    assert isinstance(det.mask, sv.CompactMask if kind == "crops" else np.ndarray)
    dense = pred.masks.numpy() if kind == "dense" else pred.dense().numpy()
    check_fields(det, pred, dense)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["model dense", "model crops", "crafted dense", "crafted crops"])
def test_supervision_coco_export_matches_ours(predictions, source, tmp_path):
    """supervision's DetectionDataset.as_coco on our detections writes the boxes, mask areas and
    categories our COCO writer (CocoBuilder, as a labelling run uses it) writes, and where it
    writes RLE, the same masks. The tiny models' noisy masks all go out as RLE; the crafted ones
    as polygons (blocks), RLE (a hole, two parts) and nothing (the empty mask)."""
    from PIL import Image
    from pycocotools import mask as mask_util

    origin, kind = source.split()
    pred = predictions[kind] if origin == "model" else crafted(kind)
    pixels = SMALL if origin == "model" else np.zeros((H, W, 3), np.uint8)
    height, width = pixels.shape[:2]
    names = list(dict.fromkeys(pred.phrases))
    image = tmp_path / "a.png"
    Image.fromarray(pixels).save(image)
    det = pred.to_supervision()
    dataset = sv.DetectionDataset(classes=names, images=[str(image)], annotations={str(image): det})
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipping COCO polygon segmentation")  # the empty mask
        dataset.as_coco(annotations_path=str(tmp_path / "sv.json"))
    theirs = json.loads((tmp_path / "sv.json").read_text())

    builder = CocoBuilder()
    builder.add(coco_image_record("a.png", width, height, pred.masks, pred.boxes, pred.logits, pred.phrases))
    ours = builder.to_dict(names)

    assert [(c["id"], c["name"]) for c in theirs["categories"]] == \
        [(c["id"], c["name"]) for c in ours["categories"]]
    assert (theirs["images"][0]["width"], theirs["images"][0]["height"]) == (width, height)
    a, b = theirs["annotations"], ours["annotations"]
    assert len(a) == len(b) == len(pred.phrases)
    assert [x["category_id"] for x in a] == [x["category_id"] for x in b]
    assert np.allclose([x["bbox"] for x in a], [x["bbox"] for x in b], atol=1e-3, rtol=0)
    assert [x["area"] for x in a] == [float(x["area"]) for x in b]
    rle = [(x, y) for x, y in zip(a, b) if isinstance(x["segmentation"], dict)]
    if origin == "crafted":
        assert len(rle) == 1 and any(isinstance(x["segmentation"], list) and x["segmentation"] for x in a)
    else:
        assert len(rle) == len(a)
    for x, y in rle:
        seg = x["segmentation"]
        assert np.array_equal(mask_util.decode(mask_util.frPyObjects(seg, *seg["size"])).astype(bool),
                              rle_to_mask(y["segmentation"]))


@pytest.mark.slow
def test_readme_annotator_example_runs(model, tmp_path, monkeypatch):
    """The docs' supervision example (docs/guides/supervision.md), as written, with the tiny models
    for ``LangSAM()`` and a small image for ``assets/cat.jpg``."""
    text = (ROOT / "docs" / "guides" / "supervision.md").read_text(encoding="utf-8")
    block = text.split("<!-- example:supervision -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert block.count("LangSAM()") == 1 and "assets/cat.jpg" in block
    from PIL import Image

    Image.fromarray(SMALL).save(tmp_path / "cat.png")
    code = block.replace("LangSAM()", "_tiny_model").replace("assets/cat.jpg", str(tmp_path / "cat.png"))
    scope = {"_tiny_model": model}
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/guides/supervision.md (supervision example)", "exec"), scope)
    assert isinstance(scope["detections"], sv.Detections) and len(scope["detections"]) > 0
    annotated = scope["annotated"]
    assert isinstance(annotated, np.ndarray) and annotated.shape == SMALL.shape
    assert not np.array_equal(annotated, SMALL), "the annotators drew nothing"
