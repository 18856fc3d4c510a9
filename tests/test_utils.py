"""lang_sam.utils: drawing and LabelMe export with torch and numpy inputs, and empty results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lang_sam.utils import MIN_AREA, contour_to_points, draw_image, generate_labelme_json, get_contours


def _masks():
    m = np.zeros((2, 40, 60), bool)
    m[0, 5:25, 5:30] = True  # 20 x 25 rectangle
    m[1, 10:30, 35:55] = True
    m[1, 0:3, 0:3] = True  # a speck below MIN_AREA
    return m


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_draw_image(kind):
    image = np.full((40, 60, 3), 100, np.uint8)
    masks = _masks()
    boxes = np.array([[5, 5, 29, 24], [35, 10, 54, 29]], np.float32)
    if kind == "torch":
        masks, boxes = torch.from_numpy(masks), torch.from_numpy(boxes)
    out = draw_image(image, masks, boxes, ["a", "b"])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, np.full((40, 60, 3), 100, np.uint8)), "input must not be modified"
    inside = out[15, 15]
    assert inside[2] > inside[0], "mask pixels are tinted cyan"
    assert out[5, 5].tolist() != [100, 100, 100], "box outline drawn"
    assert out[38, 2].tolist() == [100, 100, 100], "pixels outside masks and boxes unchanged"


def test_draw_image_empty_results():
    image = np.full((20, 30, 3), 9, np.uint8)
    out = draw_image(image, torch.zeros((0, 20, 30), dtype=torch.bool), torch.zeros((0, 4)), [])
    assert np.array_equal(out, image) and out is not image
    out = draw_image(image, torch.tensor([]), torch.tensor([]), [])
    assert np.array_equal(out, image)


def test_draw_image_validates():
    image = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(ValueError, match="labels"):
        draw_image(image, np.zeros((1, 20, 30), bool), np.zeros((1, 4)), ["a", "b"])
    with pytest.raises(ValueError, match="masks are"):
        draw_image(image, np.zeros((1, 10, 30), bool), np.zeros((1, 4)), ["a"])


def test_get_contours_drops_specks():
    masks = _masks()
    assert len(get_contours(masks[0])) == 1
    assert len(get_contours(masks[1])) == 1  # the 3x3 speck (area 4 <= MIN_AREA) is dropped
    assert len(get_contours(masks[1:2])) == 1  # (1, H, W) is squeezed
    assert len(get_contours(torch.from_numpy(masks[0]))) == 1
    assert MIN_AREA == 100
    pts = contour_to_points(get_contours(masks[0])[0])
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    assert (min(xs), max(xs), min(ys), max(ys)) == (5.0, 29.0, 5.0, 24.0)
    assert all(isinstance(v, float) for p in pts for v in p)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_generate_labelme_json(kind):
    masks = _masks() if kind == "numpy" else torch.from_numpy(_masks())
    doc = generate_labelme_json(masks, ["cat", "dog"], (40, 60), "img.jpg")
    assert doc["imageHeight"] == 40 and doc["imageWidth"] == 60 and doc["imagePath"] == "img.jpg"
    assert [s["label"] for s in doc["shapes"]] == ["cat", "dog"]
    assert all(s["shape_type"] == "polygon" and len(s["points"]) >= 4 for s in doc["shapes"])
    import json
    json.dumps(doc)  # serialisable as is
    with pytest.raises(ValueError, match="labels"):
        generate_labelme_json(masks, ["cat"], (40, 60))
