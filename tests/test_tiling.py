"""Sliced inference for large images: the grid and the merge on crafted boxes, masks kept as crops
(every writer gives what it gives for dense masks), and the tiled path on the tiny models:
``predict(tile=...)``, the labelling pipeline and ``lang-sam predict --tile``."""

from __future__ import annotations

import io
import json
import zlib
from pathlib import PurePosixPath

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image
from lang_sam import CropMask, Prediction, TiledPrediction, TileSpec, pipeline
from lang_sam.errors import InvalidTileError
from lang_sam.labeling import formats as fmt
from lang_sam.labeling.run import ImageItem, LabelSettings, label_image
from lang_sam.masks import stack_dense
from lang_sam.tiling import box_overlaps, merge_detections, sam_window, to_image_pixels
from lang_sam.utils import generate_labelme_json, get_contours

# ------------------------------------------------------------------------------------------
# The grid
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("W,H,size,overlap", [
    (1000, 700, 256, 0.2),   # neither side a multiple of the step
    (1024, 1024, 256, 0.25),
    (257, 100, 256, 0.2),    # one pixel over a tile
    (100, 60, 256, 0.2),     # smaller than a tile: one tile, the whole image
    (5000, 33, 512, 0.5),
    (300, 300, 32, 0.0),
    (6000, 4000, 1024, 0.2),
])
def test_grid_covers_every_pixel_and_ends_on_the_right_and_bottom_edges(W, H, size, overlap):
    spec = TileSpec(size, overlap)
    tiles = spec.grid(W, H)
    cover = np.zeros((H, W), np.int32)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
        assert (x1 - x0, y1 - y0) == (min(size, W), min(size, H))  # full tiles only
        cover[y0:y1, x0:x1] += 1
    assert (cover >= 1).all(), "every pixel, the last row and column included, is in a tile"
    for axis_starts, length in (sorted({t[0] for t in tiles}), W), (sorted({t[1] for t in tiles}), H):
        assert axis_starts[0] == 0
        assert min(axis_starts[-1] + size, length) == length      # the last tile ends on the edge
        gaps = np.diff(axis_starts)
        assert (gaps <= spec.step).all() and (gaps > 0).all()     # neighbours overlap by >= the overlap
    xs, ys = sorted({t[0] for t in tiles}), sorted({t[1] for t in tiles})
    assert tiles == [(x, y, min(x + size, W), min(y + size, H)) for y in ys for x in xs]  # row by row


def test_grid_numbers():
    assert TileSpec(100, 0.2).step == 80
    assert TileSpec(100, 0.2).grid(250, 90) == [(0, 0, 100, 90), (80, 0, 180, 90), (150, 0, 250, 90)]
    assert TileSpec(1024).grid(1024, 1024) == [(0, 0, 1024, 1024)]
    assert len(TileSpec(1024, 0.2).grid(6000, 4000)) == 8 * 5
    assert TileSpec.from_dict(json.loads(json.dumps(TileSpec(512, 0.1, "greedy").to_dict()))) == \
        TileSpec(512, 0.1, "greedy")


@pytest.mark.parametrize("kwargs,match", [
    (dict(size=16), "tile size must be a whole number of pixels >= 32"),
    (dict(size=100.5), "tile size"),
    (dict(size=True), "tile size"),
    (dict(overlap=1.0), r"tile overlap must be in \[0, 1\)"),
    (dict(overlap=-0.1), "tile overlap"),
    (dict(overlap=float("nan")), "tile overlap must be a number"),
    (dict(overlap=0.99, size=32), "leaves no step"),
    (dict(iou=1.5), r"tile iou must be in \[0, 1\]"),
    (dict(merge="union"), "tile merge must be one of"),
    (dict(metric="dice"), "tile metric must be one of"),
])
def test_bad_tile_specs(kwargs, match):
    with pytest.raises(InvalidTileError, match=match) as info:
        TileSpec(**kwargs)
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------------------
# Merging duplicates across tiles (crafted boxes)
# ------------------------------------------------------------------------------------------

# An object at x 100..180 seen whole by tile 1 and cut at x = 128 by tile 0's right border.
WHOLE = [100.0, 40.0, 180.0, 90.0]
PART = [100.0, 40.0, 128.0, 90.0]


def test_overlap_metrics():
    o = box_overlaps([PART], [WHOLE, [0, 0, 10, 10], [100, 40, 100, 90]], "iou")
    assert o[0, 0] == pytest.approx(28 / 80) and o[0, 1] == 0 and o[0, 2] == 0  # zero-area: 0
    assert box_overlaps([PART], [WHOLE], "ios")[0, 0] == pytest.approx(1.0)
    with pytest.raises(InvalidTileError):
        box_overlaps([PART], [WHOLE], "dice")


@pytest.mark.parametrize("part_score", [0.9, 0.6])
def test_an_object_cut_by_a_tile_border_comes_out_once(part_score):
    boxes, scores = [PART, WHOLE], [part_score, 0.8]
    keep, merged = merge_detections(boxes, scores, ["car", "car"], [0, 1], TileSpec())
    best = int(np.argmax(scores))
    assert keep.tolist() == [best] and merged.tolist() == [boxes[best]]
    # Greedy merging keeps the best one's score and phrase but grows its box to the union.
    keep, merged = merge_detections(boxes, scores, ["car", "car"], [0, 1], TileSpec(merge="greedy"))
    assert keep.tolist() == [best] and merged.tolist() == [WHOLE]
    # With IoU (28/80 = 0.35) the two would both stay: why IoS is the default metric.
    keep, _ = merge_detections(boxes, scores, ["car", "car"], [0, 1], TileSpec(metric="iou"))
    assert keep.tolist() == [0, 1]


def test_merge_is_class_aware_and_only_across_tiles():
    # Different classes never merge, whatever their overlap.
    assert merge_detections([PART, WHOLE], [0.9, 0.8], ["car", "truck"], [0, 1], TileSpec())[0].tolist() == [0, 1]
    # Two boxes of one tile are GroundingDINO's own output: never merged (predict keeps them too).
    assert merge_detections([PART, WHOLE], [0.9, 0.8], ["car", "car"], [3, 3], TileSpec())[0].tolist() == [0, 1]
    # Neighbouring objects in an overlap (IoS 0.2 < 0.5) both stay.
    assert merge_detections([[0, 0, 50, 50], [40, 0, 90, 50]], [0.9, 0.9], ["car"] * 2, [0, 1],
                            TileSpec())[0].tolist() == [0, 1]


def test_merge_order_and_greedy_chains():
    #        0: keeper (tile 0)   1: matches 0 (tile 1)  2: matches 1 only (tile 2)  3: matches 0 (tile 2)
    boxes = [[0, 0, 40, 40], [10, 0, 50, 40], [45, 0, 85, 40], [0, 5, 40, 45]]
    scores = [0.9, 0.8, 0.7, 0.95]
    keep, merged = merge_detections(boxes, scores, ["a"] * 4, [0, 1, 2, 2], TileSpec(merge="greedy"))
    # 3 scores highest: takes 0 (IoS 35/40) and 1 (IoS 30*35/1600 = 0.66) but not 2 (tile 2 = its own).
    assert keep.tolist() == [2, 3]
    assert merged.tolist() == [[45, 0, 85, 40], [0, 0, 50, 45]]
    keep, merged = merge_detections(boxes, scores, ["a"] * 4, [0, 1, 2, 2], TileSpec())
    assert keep.tolist() == [2, 3] and merged.tolist() == [boxes[2], boxes[3]]
    empty = merge_detections(np.zeros((0, 4)), [], [], [], TileSpec())
    assert empty[0].tolist() == [] and tuple(empty[1].shape) == (0, 4)
    with pytest.raises(ValueError, match="expected equal counts"):
        merge_detections([PART], [0.5, 0.4], ["a"], [0], TileSpec())


def test_tile_boxes_to_image_pixels():
    boxes = torch.tensor([[-5.0, -3.0, 20.0, 30.0], [80.0, 90.0, 110.0, 120.0], [10.0, 10.0, 20.0, 20.0]])
    image = (300, 400)  # H, W
    # An inner tile: offset, then cut at all four borders.
    inner = to_image_pixels(boxes, (100, 50, 200, 150), image)
    assert inner.tolist() == [[100, 50, 120, 80], [180, 140, 200, 150], [110, 60, 120, 70]]
    # A corner tile: the image's own edges are not cut (as predict leaves them), inner ones are.
    corner = to_image_pixels(boxes, (0, 0, 100, 100), image)
    assert corner.tolist() == [[-5, -3, 20, 30], [80, 90, 100, 100], [10, 10, 20, 20]]
    assert to_image_pixels(boxes, (0, 0, 400, 300), image) is boxes   # the whole image: untouched


def test_sam_window():
    spec = TileSpec(100, 0.2)
    tiles = spec.grid(250, 180)   # x starts 0, 80, 150; y starts 0, 80
    # Inside several tiles: the one whose centre is closest to the box's.
    assert sam_window([90, 88, 110, 100], tiles, (180, 250), 100) == (80, 80, 180, 180)
    assert sam_window([90, 85, 110, 95], tiles, (180, 250), 100) == (80, 0, 180, 100)  # a tie: the first
    assert sam_window([5, 5, 20, 20], tiles, (180, 250), 100) == (0, 0, 100, 100)
    # Out of the image it is clipped first.
    assert sam_window([240, 170, 300, 200], tiles, (180, 250), 100) == (150, 80, 250, 180)
    # Cut by every tile border (x 70..160): a tile-sized window centred on it, moved inside.
    assert sam_window([70, 10, 160, 30], tiles, (180, 250), 100) == (65, 0, 165, 100)
    # Larger than a tile: the box and a 5 % margin.
    assert sam_window([20, 10, 230, 170], tiles, (180, 250), 100) == (9, 2, 241, 178)


# ------------------------------------------------------------------------------------------
# Masks as crops
# ------------------------------------------------------------------------------------------

def crafted_image_masks(H=90, W=130):
    """Masks touching every edge, with holes, several parts, full-height runs, empty, and tiny."""
    yy, xx = np.mgrid[0:H, 0:W]
    out = []
    m = np.zeros((H, W), bool)
    m[10:40, 20:70] = True
    out.append(m)
    r = np.hypot(yy - 45, xx - 65)
    out.append((r < 30) & (r > 8))
    speckle = np.random.default_rng(0).random((H, W)) > 0.4
    speckle[:, :50] = False
    out.append(speckle)                                  # touches the right, top and bottom edges
    m = np.zeros((H, W), bool)
    m[:, 0:12] = True                                    # full-height columns: runs join across columns
    m[0:20, 100:] = True
    out.append(m)
    out.append(np.ones((H, W), bool))
    out.append(np.zeros((H, W), bool))
    m = np.zeros((H, W), bool)
    m[H - 3:, W - 3:] = True                             # 9 pixels in the corner: no contour
    out.append(m)
    return np.stack(out)


def test_crop_mask_basics():
    dense = crafted_image_masks()
    for m in dense:
        c = CropMask.from_dense(m)
        assert np.array_equal(c.to_dense(), m) and c.area == int(m.sum()) and c.shape == m.shape
        if m.any():
            rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
            assert c.bbox == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)   # tight
        else:
            assert c.mask.shape == (0, 0)
    c = CropMask.from_dense(dense[0])
    assert c.mask.shape == (30, 50) and (c.x0, c.y0) == (20, 10) and c.nbytes == 1500
    assert repr(c) == "CropMask(50x30 at (20, 10) of a 130x90 image, area 1500)"
    assert CropMask.from_window(np.ones((3, 3)), 5, 6, (90, 130), tight=False).mask.dtype == np.bool_
    with pytest.raises(ValueError, match="does not fit"):
        CropMask(np.ones((10, 10), bool), 125, 0, (90, 130))
    with pytest.raises(ValueError, match="2-D"):
        CropMask(np.ones((1, 10, 10), bool), 0, 0, (90, 130))
    crops = [CropMask.from_dense(m) for m in dense]
    assert np.array_equal(stack_dense(crops), dense)
    assert stack_dense([], (90, 130)).shape == (0, 90, 130)


def test_crop_rle_and_contours_equal_the_dense_ones():
    for m in crafted_image_masks():
        c = CropMask.from_dense(m)
        assert c.to_rle() == fmt.mask_to_rle(m)
        assert np.array_equal(fmt.rle_to_mask(c.to_rle()), m)
        dense_c, crop_c = get_contours(m), get_contours(c)
        assert len(dense_c) == len(crop_c) and all(np.array_equal(a, b) for a, b in zip(dense_c, crop_c))
    rng = np.random.default_rng(1)
    for _ in range(200):   # random sizes and placements
        H, W = rng.integers(1, 40, 2)
        m = np.zeros((H, W), bool)
        y0, x0 = rng.integers(0, H), rng.integers(0, W)
        y1, x1 = rng.integers(y0, H + 1), rng.integers(x0, W + 1)
        m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) > rng.random()
        assert CropMask.from_dense(m).to_rle() == fmt.mask_to_rle(m)


def test_every_writer_gives_the_same_for_crops_and_dense(tmp_path):
    dense = crafted_image_masks()
    crops = [CropMask.from_dense(m) for m in dense]
    H, W = dense.shape[1:]
    names = ["car", "wheel", "car", "road", "all", "none", "dot"]
    boxes = np.array([c.bbox for c in crops], np.float32)
    scores = np.linspace(0.9, 0.3, len(names))

    assert fmt.masks_to_rle(crops) == fmt.masks_to_rle(dense)
    assert fmt.coco_image_record("a.png", W, H, crops, boxes, scores, names) == \
        fmt.coco_image_record("a.png", W, H, dense, boxes, scores, names)
    assert fmt.labelme_dict(crops, names, (H, W), "a.png") == fmt.labelme_dict(dense, names, (H, W), "a.png")
    assert generate_labelme_json(crops, names, (H, W)) == generate_labelme_json(torch.from_numpy(dense), names, (H, W))
    ids = [0, 1, 0, 2, 3, 4, 5]
    assert fmt.yolo_lines(crops, ids, (H, W)) == fmt.yolo_lines(dense, ids, (H, W))
    a = fmt.write_instance_masks(tmp_path / "crops", crops, names)
    b = fmt.write_instance_masks(tmp_path / "dense", dense, names)
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b):
        assert np.array_equal(np.asarray(Image.open(pa)), np.asarray(Image.open(pb)))
    image = make_image(H, W, seed=5)
    labels = fmt.detection_labels(names, scores)
    drawn = fmt.render_overlay(image, dense, boxes, labels)
    assert np.array_equal(fmt.render_overlay(image, crops, boxes, labels), drawn)
    assert np.array_equal(fmt.render_overlay(Image.fromarray(image), crops, boxes, labels), drawn)
    # Downscaled (max_pixels): crops and dense still draw the same picture, at the smaller size.
    small = fmt.render_overlay(image, crops, boxes, labels, max_pixels=H * W // 4)
    assert small.shape == (H // 2, W // 2, 3)
    assert np.array_equal(fmt.render_overlay(image, dense, boxes, labels, max_pixels=H * W // 4), small)
    with pytest.raises(ValueError, match="masks are"):
        fmt.coco_image_record("a.png", W + 1, H, crops, boxes, scores, names)


def test_mask_png_is_streamed_from_the_crop(tmp_path, monkeypatch):
    # A 9000x7000 image: the PNG decodes to the full mask, and zlib's own check (adler32) passes.
    H, W = 7000, 9000
    crop = CropMask(np.random.default_rng(2).random((300, 500)) > 0.5, 8500, 3000, (H, W))
    path = fmt.write_mask_png(tmp_path / "m.png", crop)
    assert path.stat().st_size < 200_000
    back = np.asarray(Image.open(path))
    assert back.shape == (H, W) and back.dtype == np.uint8
    assert np.array_equal(back[3000:3300, 8500:], crop.mask * np.uint8(255))
    assert back.sum() == crop.area * 255
    raw, i, idat = path.read_bytes(), 8, b""
    while i < len(raw):
        n = int.from_bytes(raw[i:i + 4], "big")
        if raw[i + 4:i + 8] == b"IDAT":
            idat += raw[i + 8:i + 8 + n]
        i += 12 + n
    assert len(zlib.decompress(idat)) == H * (W + 1)
    # Zero-row blocks of any size, an empty mask, a mask ending on the last pixel.
    rng = np.random.default_rng(3)
    for block in (1, 7, 1000):
        monkeypatch.setattr(fmt, "_ZERO_BLOCK_BYTES", block)
        for m in crafted_image_masks(37, 23):
            fmt.write_mask_png(tmp_path / "s.png", CropMask.from_dense(m))
            assert np.array_equal(np.asarray(Image.open(tmp_path / "s.png")) > 0, m)
        m = rng.random((37, 23)) > 0.5
        fmt.write_mask_png(tmp_path / "s.png", CropMask.from_dense(m))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "s.png")) > 0, m)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png", "s.png"]  # no temporary file left


# ------------------------------------------------------------------------------------------
# The tiled path on the tiny models
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def _room_for_every_tile(model):
    """The tiles of SMALL stay encoded across these tests (the session model keeps 2 by default)."""
    old = model.cache_size
    model.cache_size = 8
    yield
    model.cache_size = old


SMALL = make_image(90, 150, seed=31)       # 2 tiles of 96 px, step 72: x 0 and 54 (on the edge)
TILE = TileSpec(96, 0.25)
PROMPT = "cat. remote control"


def same_as_predict(tiled: TiledPrediction, plain) -> bool:
    return (torch.equal(tiled.boxes, plain.boxes) and torch.equal(tiled.logits, plain.logits)
            and tiled.phrases == plain.phrases and torch.equal(tiled.iou_scores, plain.iou_scores)
            and torch.equal(tiled.dense(), plain.masks))


@pytest.mark.slow
def test_a_tile_as_large_as_the_image_gives_exactly_predict(model):
    plain = model.predict(SMALL, "cat. remote control")
    assert len(plain.boxes) > 0
    for size in (256, 150):   # larger than the image; as large as its long side
        tiled = model.predict(SMALL, "cat. remote control", tile=TileSpec(size))
        assert tiled.tiles == [(0, 0, 150, 90)]
        assert same_as_predict(tiled, plain)
        assert all(isinstance(m, CropMask) for m in tiled.masks)
        assert "from 1 tile" in repr(tiled)



def test_tiled_prediction_repr_is_one_short_line_whatever_n():
    long = "a very long phrase that goes on and on and on"
    crop = CropMask(np.ones((2, 2), bool), 0, 0, (10, 10))
    many = TiledPrediction([crop] * 700, torch.zeros(700, 4), [long] * 700, torch.rand(700),
                           iou_scores=torch.rand(700), image_size=(10, 10), tiles=[(0, 0, 10, 10)])
    r = repr(many)
    assert r.startswith("TiledPrediction(700 detections on a 10x10 image from 1 tile: ")
    assert long not in r and repr(long[:23] + "\u2026") in r and "(+695 more)" in r and len(r) < 400

@pytest.mark.slow
def test_tiles_are_detected_at_full_resolution_in_image_pixels(model):
    det = model.predict_dino(SMALL, "cat", 0.3, 0.25, tile=TILE)
    assert list(det.tiles) == [(0, 0, 96, 90), (54, 0, 150, 90)]
    assert det.image_size == (90, 150)
    pil = Image.fromarray(SMALL)
    inf = float("inf")
    for i, (x0, y0, x1, y1) in enumerate(det.tiles):
        boxes, logits, phrases = model.predict_dino(pil.crop((x0, y0, x1, y1)), "cat", 0.3, 0.25)
        mine = det.tile_index == i
        assert int(mine.sum()) == len(boxes) > 0, "the last (right, bottom) tiles are detected too"
        # In image pixels, cut at the tile's inner borders only (not at the image's edges).
        lo = torch.tensor([x0 if x0 else -inf, y0 if y0 else -inf] * 2)
        hi = torch.tensor([x1 if x1 < 150 else inf, y1 if y1 < 90 else inf] * 2)
        expected = torch.minimum(torch.maximum(boxes + torch.tensor([x0, y0, x0, y0]), lo), hi)
        assert torch.equal(det.boxes[mine], expected)
        assert torch.equal(det.scores[mine], logits)
        assert [p for p, k in zip(det.phrases, mine.tolist()) if k] == phrases


def test_each_box_is_segmented_on_its_window_at_full_resolution(model):
    boxes = torch.tensor([[10.0, 10.0, 40.0, 50.0],      # tile (0, 0)
                          [120.0, 60.0, 149.0, 89.0],    # the right tile
                          [5.0, 5.0, 145.0, 85.0]])      # wider than a tile: its own window
    masks, scores = model.predict_sam(SMALL, boxes, tile=TILE)
    assert len(masks) == 3 and scores.shape == (3,) and scores.dtype == torch.float32
    pil = Image.fromarray(SMALL)
    windows = [(0, 0, 96, 90), (54, 0, 150, 90), (0, 0, 150, 90)]
    for box, mask, score, w in zip(boxes, masks, scores, windows):
        assert sam_window(box.tolist(), TILE.grid(150, 90), (90, 150), 96) == w
        local = box - torch.tensor([w[0], w[1], w[0], w[1]], dtype=torch.float32)
        expected = model.segment(pil.crop(w), boxes=local[None])
        want = np.zeros((90, 150), bool)
        want[w[1]:w[3], w[0]:w[2]] = model.predict_sam(pil.crop(w), local[None])[0, 0].numpy()
        assert mask.image_size == (90, 150) and np.array_equal(mask.to_dense(), want)
        assert abs(float(score) - float(expected.iou_scores[0, 0])) < 1e-4
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        model.predict_sam(SMALL, torch.zeros(4), tile=TILE)


def test_predict_with_tile_is_the_tiled_pipeline_run(model):
    """``predict(..., tile=)`` (issue 26 folded ``predict_tiled`` into it): the pipeline run with
    ``merge_tiles``, as a TiledPrediction; ``progress`` hears of each tile and of the boxes."""
    calls: list = []
    got = model.predict(SMALL, "cat", tile=TILE, progress=lambda *a: calls.append(a))
    out = pipeline.run(model.engines, SMALL, "cat", select=[pipeline.merge_tiles(TILE)], tile=TILE)
    assert isinstance(got, TiledPrediction) and list(got.tiles) == list(out.detections.tiles) == list(TILE.grid(150, 90))
    assert torch.equal(got.boxes, out.detections.boxes) and got.phrases == out.detections.phrases
    assert torch.equal(got.logits, out.detections.scores) and torch.equal(got.iou_scores, out.iou_scores)
    assert got.image_size == (90, 150) and len(got.masks) == len(out.masks) > 0
    assert all(np.array_equal(a.to_dense(), b.to_dense()) for a, b in zip(got.masks, out.masks))
    assert calls[:3] == [("detect", 0, 2), ("detect", 1, 2), ("detect", 2, 2)]
    n = len(got.phrases)
    assert calls[3] == ("segment", 0, n) and calls[-1] == ("segment", n, n)
    plain = model.predict(SMALL, "cat")  # no tile: the 2023 result, dense masks
    assert isinstance(plain, Prediction) and not isinstance(plain, TiledPrediction)


@pytest.mark.slow
def test_predict_with_tile_merges_duplicates_across_tiles(model):
    det = model.predict_dino(SMALL, "cat", 0.3, 0.25, tile=TILE)
    out = model.predict(SMALL, "cat", tile=TILE)
    keep, boxes = merge_detections(det.boxes, det.scores, det.phrases, det.tile_index, TILE)
    assert 0 < len(out.phrases) < len(det), "the overlap found objects twice; the merge removed some"
    assert torch.equal(out.boxes, boxes) and out.phrases == [det.phrases[i] for i in keep]
    assert torch.equal(out.logits, det.scores[torch.from_numpy(keep)])
    masks, scores = model.predict_sam(SMALL, boxes, tile=TILE)
    assert torch.equal(out.iou_scores, scores)
    assert all(np.array_equal(a.mask, b.mask) and a.bbox == b.bbox for a, b in zip(out.masks, masks))
    # What is left has no cross-tile duplicate of one phrase.
    tiles = det.tile_index[torch.from_numpy(keep)].numpy()
    o = box_overlaps(out.boxes, out.boxes, "ios")
    dup = [(i, j) for i in range(len(out.phrases)) for j in range(i + 1, len(out.phrases))
           if o[i, j] > TILE.iou and tiles[i] != tiles[j] and out.phrases[i] == out.phrases[j]]
    assert dup == []
    dense = out.dense()
    assert dense.shape == (len(out.phrases), 90, 150) and dense.dtype == torch.bool
    assert all(m.image_size == (90, 150) for m in out.masks)
    # Greedy merging keeps the same detections, with boxes grown to the union of those merged.
    greedy = TileSpec(96, 0.25, merge="greedy")
    out = model.predict(SMALL, "cat", tile=greedy)
    keep_g, boxes_g = merge_detections(det.boxes, det.scores, det.phrases, det.tile_index, greedy)
    assert np.array_equal(keep_g, keep) and torch.equal(out.boxes, boxes_g)
    assert not torch.equal(boxes_g, boxes) and bool((boxes_g[:, :2] <= boxes[:, :2]).all())
    assert bool((boxes_g[:, 2:] >= boxes[:, 2:]).all()) and len(out.masks) == len(keep)


# ------------------------------------------------------------------------------------------
# The pipeline and the CLI
# ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_label_image_tiled(model, tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.fromarray(SMALL).save(path)
    item = ImageItem(path, PurePosixPath("a.png"))
    formats = ["overlay", "coco"]
    plain = label_image(model, item, LabelSettings.create("cat. remote control"), formats)
    whole = label_image(model, item, LabelSettings.create("cat. remote control", tile=TileSpec(256)), formats)
    # One mask form in labelling, tiled or not: crops.
    assert all(isinstance(m, CropMask) for m in plain.masks + whole.masks)
    assert np.array_equal(plain.boxes, whole.boxes) and plain.names == whole.names
    assert np.array_equal(stack_dense(whole.masks), stack_dense(plain.masks, (90, 150)))
    assert whole.overlay_png == plain.overlay_png

    import lang_sam.labeling.run as run

    monkeypatch.setattr(run, "TILED_OVERLAY_MAX_PIXELS", 150 * 90 // 4)
    tiled = label_image(model, item, LabelSettings.create(classes=["cat", "remote control"], tile=TILE), formats)
    assert len(tiled) > 0 and set(tiled.names) <= {"cat", "remote control"}
    overlay = np.asarray(Image.open(io.BytesIO(tiled.overlay_png)))
    assert overlay.shape == (45, 75, 3)  # drawn on a downscaled copy


@pytest.mark.slow
def test_cli_predict_with_tiles(tmp_path, tiny_specs, sam_ckpt, gdino_ckpt, capsys, model):
    from lang_sam.cli import main
    from pycocotools.coco import COCO

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(SMALL).save(imgs / "a.png")
    out = tmp_path / "out"
    sam, gdino = tiny_specs
    model_args = ["--sam-type", sam.name, "--sam-ckpt", str(sam_ckpt), "--gdino-type", gdino.name,
                  "--gdino-ckpt", str(gdino_ckpt), "--device", "cpu"]
    args = ["predict", str(imgs), "--prompt", PROMPT, "--output", str(out), "-q",
            "--format", "overlay,masks,coco,labelme,yolo", "--tile", "96", "--tile-overlap", "0.25",
            *model_args]
    assert main(args) == 0, capsys.readouterr()
    assert "1 labelled" in capsys.readouterr().out

    expected = label_image(model, ImageItem(imgs / "a.png", PurePosixPath("a.png")),
                           LabelSettings.create(PROMPT, tile=TILE), [])
    coco = COCO(str(out / "coco" / "annotations.json"))
    anns = sorted(coco.loadAnns(coco.getAnnIds()), key=lambda a: a["id"])
    assert len(anns) == len(expected) > 0
    pngs = sorted((out / "masks" / "a").glob("*.png"))
    assert len(pngs) == len(anns)
    for ann, png, crop in zip(anns, pngs, expected.masks):
        mask = coco.annToMask(ann).astype(bool)
        assert np.array_equal(mask, crop.to_dense()) and ann["area"] == crop.area
        assert np.array_equal(np.asarray(Image.open(png)) > 0, mask)
    d = json.loads((out / "labelme" / "a.json").read_text())
    assert d["shapes"] == fmt.labelme_dict(expected.masks, expected.names, (90, 150))["shapes"]
    assert np.asarray(Image.open(out / "overlays" / "a.png")).shape == (90, 150, 3)
    run = json.loads((out / ".lang-sam" / "run.json").read_text())
    assert run["config"]["tile"] == {"size": 96, "overlap": 0.25, "merge": "nms", "iou": 0.5, "metric": "ios"}

    # Resuming with another tiling is refused; bad tile flags are usage errors.
    assert main([*args[:-len(model_args)], "--tile-overlap", "0.3", "--resume", *model_args]) == 2
    assert "tile" in capsys.readouterr().err
    assert main([*args[:9], "--tile", "8", *model_args]) == 2
    assert ">= 32" in capsys.readouterr().err
    assert main([*args[:9], "--tile-overlap", "0.3", *model_args]) == 2
    assert "need --tile" in capsys.readouterr().err
