"""Sliced inference for large images: the tile grid, merging what overlapping tiles found twice,
and the windows SAM segments on (the pipeline's tiled path, :mod:`lang_sam.pipeline`, uses them).

GroundingDINO resizes every image to 800 px on its short side, so a 30-pixel object of a 6000x4000
photo shrinks to 6 pixels. Detecting on overlapping tiles at full resolution finds it; boxes are
mapped back to the image, duplicates from the overlaps are merged, and SAM segments each kept box
on a tile-sized window around it, never on a downscale of the whole image.

Everything here is plain maths on boxes (numpy, torch): no model. Coordinates are full-image
pixels, boxes xyxy. The grid and the merge follow SAHI's (``sahi.slicing.get_slice_bboxes``,
``sahi.postprocess``: last tile aligned to the right and bottom edges, intersection over the
smaller box as the default match metric), written here in a few lines rather than taken as a
dependency (see docs/guides/large-images.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Hashable, Sequence

import numpy as np
import torch

from lang_sam.errors import InvalidArgumentError, InvalidTileError
from lang_sam.validation import as_numpy

__all__ = [
    "TileSpec", "Tile", "MERGE_METHODS", "MATCH_METRICS", "box_overlaps", "merge_detections",
    "to_image_pixels", "sam_window",
]

#: ``(x0, y0, x1, y1)`` of a tile in image pixels, ``x1``/``y1`` exclusive.
Tile = tuple[int, int, int, int]  # the same alias as lang_sam.results.Tile

MERGE_METHODS = ("nms", "greedy")
MATCH_METRICS = ("ios", "iou")
MIN_TILE = 32


@dataclass(frozen=True)
class TileSpec:
    """How an image is sliced and how duplicates across tiles are merged.

    - ``size``: tile width and height in pixels (tiles at the right and bottom edges are moved
      inwards to end on the edge, so every tile but those of a smaller image is ``size`` square);
    - ``overlap``: fraction of ``size`` shared by neighbouring tiles, in [0, 1); the step between
      tiles is ``size - round(size * overlap)``;
    - ``merge``: ``"nms"`` (default): of two detections of the same class from different tiles
      that match, the lower-scoring one is dropped; ``"greedy"``: it is merged into the higher one,
      whose box grows to the union of both (SAHI's greedy non-maximum merging);
    - ``iou``: the match threshold: two boxes match when their ``metric`` exceeds it;
    - ``metric``: ``"ios"`` (default), intersection over the smaller box's area, or ``"iou"``.
      An object cut by a tile border gives a partial box in one tile and the whole box in the
      other: their IoU can be low while their IoS is about 1.

    Detections from the same tile are never merged with each other (that is GroundingDINO's own
    output, which :meth:`LangSAM.predict` returns as is too); classes never merge with each other.
    """

    size: int = 1024
    overlap: float = 0.2
    merge: str = "nms"
    iou: float = 0.5
    metric: str = "ios"

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, Integral) or self.size < MIN_TILE:
            raise InvalidTileError(f"tile size must be a whole number of pixels >= {MIN_TILE}, got {self.size!r}")
        object.__setattr__(self, "size", int(self.size))
        for name, lo, hi_open in (("overlap", 0.0, True), ("iou", 0.0, False)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Real) or math.isnan(float(v)):
                raise InvalidTileError(f"tile {name} must be a number, got {v!r}")
            v = float(v)
            if v < lo or (v >= 1.0 if hi_open else v > 1.0):
                raise InvalidTileError(
                    f"tile {name} must be in [0, 1{')' if hi_open else ']'}, got {v}"
                )
            object.__setattr__(self, name, v)
        if self.merge not in MERGE_METHODS:
            raise InvalidTileError(f"tile merge must be one of {MERGE_METHODS}, got {self.merge!r}")
        if self.metric not in MATCH_METRICS:
            raise InvalidTileError(f"tile metric must be one of {MATCH_METRICS}, got {self.metric!r}")
        if self.step < 1:
            raise InvalidTileError(f"tile overlap {self.overlap} leaves no step between {self.size}-px tiles")

    @property
    def step(self) -> int:
        """Pixels between the left (top) edges of neighbouring tiles."""
        return self.size - int(round(self.size * self.overlap))

    def grid(self, width: int, height: int) -> list[Tile]:
        """The tiles of a ``width x height`` image, row by row: ``(x0, y0, x1, y1)``, ``x1``/``y1``
        exclusive. Tiles start every :attr:`step` pixels; the last row and column are aligned to
        the bottom and right edges (so nothing is lost when the size is not a multiple of the
        step). An image no larger than ``size`` is one tile: the whole image."""
        if width < 1 or height < 1:
            raise InvalidTileError(f"cannot tile a {width}x{height} image")
        xs, ys = self._starts(int(width)), self._starts(int(height))
        return [(x, y, min(x + self.size, width), min(y + self.size, height)) for y in ys for x in xs]

    def _starts(self, length: int) -> list[int]:
        if length <= self.size:
            return [0]
        return [*range(0, length - self.size, self.step), length - self.size]

    def to_dict(self) -> dict:
        """JSON-able fields (for a run's settings)."""
        return {"size": self.size, "overlap": self.overlap, "merge": self.merge, "iou": self.iou,
                "metric": self.metric}

    @classmethod
    def from_dict(cls, d: dict) -> "TileSpec":
        return cls(**d)


def box_overlaps(a: Any, b: Any, metric: str = "iou") -> np.ndarray:
    """Pairwise overlap ``(N, M)`` of xyxy boxes ``a`` ``(N, 4)`` and ``b`` ``(M, 4)``: intersection
    over union (``"iou"``) or over the smaller box's area (``"ios"``); 0 where the divisor is 0."""
    if metric not in MATCH_METRICS:
        raise InvalidTileError(f"metric must be one of {MATCH_METRICS}, got {metric!r}")
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    if metric == "iou":
        denom = area_a[:, None] + area_b[None, :] - inter
    else:
        denom = np.minimum(area_a[:, None], area_b[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, inter / np.where(denom > 0, denom, 1), 0.0)


def merge_detections(
    boxes: Any,
    scores: Any,
    classes: Sequence[Hashable],
    tiles: Any,
    spec: TileSpec,
) -> tuple[np.ndarray, torch.Tensor]:
    """Merge detections that neighbouring tiles found twice.

    ``boxes`` ``(N, 4)`` xyxy image pixels, ``scores`` ``(N,)``, ``classes`` ``N`` hashable class
    keys, ``tiles`` ``N`` ints (the tile each detection came from). Detections are visited by
    score, highest first (ties: input order). A visited detection not yet taken keeps itself and
    takes every later one of the same class, from another tile, whose box matches its box
    (``spec.metric`` over ``spec.iou``); with ``spec.merge == "greedy"`` its box becomes the
    union of the boxes it took. Returns ``(keep, boxes)``: the kept indices in input order
    ``(K,)`` int64 and their boxes ``(K, 4)`` float32 tensor (with ``"nms"``, the input's boxes).
    """
    b = as_numpy(boxes).astype(np.float64).reshape(-1, 4)
    s = as_numpy(scores).astype(np.float64).reshape(-1)
    t = as_numpy(tiles).astype(np.int64).reshape(-1)
    if not len(b) == len(s) == len(classes) == len(t):
        raise InvalidArgumentError(
            f"got {len(b)} boxes, {len(s)} scores, {len(classes)} classes and {len(t)} tile indices; "
            "expected equal counts"
        )
    ids: dict[Hashable, int] = {}
    c = np.array([ids.setdefault(k, len(ids)) for k in classes], dtype=np.int64)
    n = len(b)
    taken = np.zeros(n, dtype=bool)
    merged = b.copy()
    keep: list[int] = []
    order = np.argsort(-s, kind="stable")
    for i in order:
        if taken[i]:
            continue
        taken[i] = True
        keep.append(int(i))
        rest = np.flatnonzero(~taken & (c == c[i]) & (t != t[i]))
        if len(rest) == 0:
            continue
        hit = rest[box_overlaps(b[i], b[rest], spec.metric)[0] > spec.iou]
        taken[hit] = True
        if spec.merge == "greedy" and len(hit):
            group = np.vstack([b[i], b[hit]])
            merged[i] = [group[:, 0].min(), group[:, 1].min(), group[:, 2].max(), group[:, 3].max()]
    kept = np.sort(np.asarray(keep, dtype=np.int64))
    return kept, torch.from_numpy(merged[kept].astype(np.float32)).reshape(-1, 4)


def to_image_pixels(boxes: torch.Tensor, tile: Tile, image_size: tuple[int, int]) -> torch.Tensor:
    """``(N, 4)`` xyxy boxes in a tile's pixels -> image pixels, cut at the tile's inner borders
    (those that are not the image's edges: the tile saw nothing past them). Boxes past the image's
    own edges are left as they are, as :meth:`LangSAM.predict` leaves them, so a tile covering the
    whole image changes nothing."""
    H, W = image_size
    x0, y0, x1, y1 = tile
    if (x0, y0) != (0, 0):
        boxes = boxes + torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)
    if (x0, y0, x1, y1) != (0, 0, W, H):
        lo = torch.tensor([x0 if x0 > 0 else -math.inf, y0 if y0 > 0 else -math.inf] * 2, dtype=boxes.dtype)
        hi = torch.tensor([x1 if x1 < W else math.inf, y1 if y1 < H else math.inf] * 2, dtype=boxes.dtype)
        boxes = torch.minimum(torch.maximum(boxes, lo), hi)
    return boxes


def sam_window(box: Any, tiles: Sequence[Tile], image_size: tuple[int, int], tile_size: int) -> Tile:
    """The image window SAM segments ``box`` (xyxy image pixels) on, at full resolution.

    Of the tiles holding the whole box (clipped to the image), the one whose centre is closest to
    the box's; if none does (a box cut by every tile border, or larger than a tile), a
    ``tile_size`` window centred on the box and moved inside the image, or, for a box larger than
    that, the box itself with a 5 % margin.
    """
    H, W = image_size
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(max(x0, 0.0), W), min(max(x1, 0.0), W)
    y0, y1 = min(max(y0, 0.0), H), min(max(y1, 0.0), H)
    x1, y1 = max(x1, x0), max(y1, y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    best, best_d = None, math.inf
    for t in tiles:
        if t[0] <= x0 and x1 <= t[2] and t[1] <= y0 and y1 <= t[3]:
            d = ((t[0] + t[2]) / 2 - cx) ** 2 + ((t[1] + t[3]) / 2 - cy) ** 2
            if d < best_d:
                best, best_d = t, d
    if best is not None:
        return best

    def span(lo: float, hi: float, length: int) -> tuple[int, int]:
        if hi - lo <= tile_size:
            size = min(tile_size, length)
            start = int(round((lo + hi) / 2 - size / 2))
            start = min(max(start, 0), length - size)
            return start, start + size
        pad = 0.05 * (hi - lo)
        return max(int(math.floor(lo - pad)), 0), min(int(math.ceil(hi + pad)), length)

    wx0, wx1 = span(x0, x1, W)
    wy0, wy1 = span(y0, y1, H)
    return wx0, wy0, wx1, wy1
