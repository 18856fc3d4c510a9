"""Segment everything: SAM's automatic mask generator, written once over the engine seam.

:func:`generate` prompts a segmenter (:class:`~lang_sam.models.base.Segmenter`) with a grid of
points over the image, and over crops of it (``crop_n_layers``), and keeps the masks that pass the
filters of Segment Anything's ``SamAutomaticMaskGenerator`` (and SAM 2's
``SAM2AutomaticMaskGenerator``, which is the same algorithm):

1. for each crop (the whole image first): encode it once, then decode ``points_per_batch`` grid
   points at a time (:meth:`Segmenter.predict_logits`: ``C`` = 3 masks per point with
   ``multimask_output``), optionally refine each mask once with its own low-resolution logits as
   ``mask_input`` (``use_m2m``, SAM 2's option);
2. drop masks whose predicted IoU is not over ``pred_iou_thresh`` and whose stability score (the
   IoU of the mask thresholded at ``mask_threshold +- stability_score_offset``) is under
   ``stability_score_thresh``; threshold the rest at ``mask_threshold``; drop those whose box
   touches a crop edge that is not an image edge (within 20 px);
3. box NMS within the crop (``box_nms_thresh``, by predicted IoU), then across crops
   (``crop_nms_thresh``, preferring masks of smaller crops);
4. with ``min_mask_region_area``, remove holes and islands smaller than that from each mask, and
   run box NMS again (``max(box_nms_thresh, crop_nms_thresh)``), preferring unchanged masks.

What differs between the families comes from the engine: its defaults
(:attr:`Segmenter.generate_defaults`: SAM v1 keeps predicted IoU over 0.88, SAM 2 over 0.8) and
its logits (:meth:`Segmenter.predict_logits`). Kept masks are held as crops
(:class:`~lang_sam.masks.CropMask`) until the end, so memory is the objects' size plus one batch
of ``points_per_batch x C`` float32 logits of a crop's size (the generators' own peak), at most
:data:`LOGITS_BYTES`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields
from itertools import product
from typing import Any, Callable, Sequence

import numpy as np
import torch

from lang_sam.errors import InvalidArgumentError
from lang_sam.masks import CropMask, stack_dense
from lang_sam.results import GeneratedMasks

logger = logging.getLogger(__name__)

__all__ = ["GenerateSettings", "generate", "point_grid", "layer_point_grids", "crop_boxes",
           "stability_scores", "masks_to_boxes", "remove_small_regions"]

#: At most this many bytes of float32 full-size logits are decoded at once: a batch of
#: ``points_per_batch`` points whose ``points_per_batch x 3`` logits of a crop's size would be
#: larger is decoded in smaller steps (a 4000x3000 photo: 7 points a step instead of 64, 1 GiB
#: instead of 9 GiB). Segment Anything's generator has no such bound.
LOGITS_BYTES = 1 << 30

#: ``progress(stage, done, total)``: ``"generate"`` in grid points decoded (all crops together).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class GenerateSettings:
    """The automatic mask generator's parameters; names and meanings are Segment Anything's
    (``SamAutomaticMaskGenerator``), defaults SAM v1's. :meth:`for_engine` applies a family's own
    defaults (:attr:`~lang_sam.models.base.Segmenter.generate_defaults`).

    - ``points_per_side``: a grid of ``points_per_side ** 2`` points on the image (each crop
      layer ``i`` gets ``int(points_per_side / crop_n_points_downscale_factor ** i)`` per side);
      or None with ``point_grids``: one ``(P, 2)`` array of xy in [0, 1] per crop layer;
    - ``points_per_batch``: points decoded together (memory: ``points_per_batch x 3`` float32
      masks of a crop's size);
    - ``pred_iou_thresh``, ``stability_score_thresh``, ``stability_score_offset``,
      ``mask_threshold``: the quality filters (0 turns a threshold off);
    - ``box_nms_thresh``, ``crop_nms_thresh``: box IoU over which duplicates go, within a crop
      and across crops;
    - ``crop_n_layers``, ``crop_overlap_ratio``, ``crop_n_points_downscale_factor``: layer ``i``
      (from 1) cuts the image into ``2**i x 2**i`` overlapping crops, each segmented again;
    - ``min_mask_region_area``: remove holes and islands smaller than this (pixels; 0: off);
    - ``multimask_output``: 3 masks per point (else 1); ``use_m2m``: refine each mask once with
      its own low-resolution logits (SAM 2's option, off by default).

    Raises:
        InvalidArgumentError: neither or both of ``points_per_side`` and ``point_grids``; a
            setting of the wrong type or out of its range; fewer ``point_grids`` than crop layers.
    """

    points_per_side: int | None = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: tuple[np.ndarray, ...] | None = None
    min_mask_region_area: int = 0
    multimask_output: bool = True
    use_m2m: bool = False

    def __post_init__(self) -> None:
        if (self.points_per_side is None) == (self.point_grids is None):
            raise InvalidArgumentError(
                "give exactly one of points_per_side or point_grids, got "
                f"points_per_side={self.points_per_side!r} and "
                f"point_grids={'None' if self.point_grids is None else 'a list'}")
        ints = {"points_per_batch": 1, "crop_n_layers": 0, "crop_n_points_downscale_factor": 1,
                "min_mask_region_area": 0}
        if self.points_per_side is not None:
            ints["points_per_side"] = 1
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise InvalidArgumentError(f"{name} must be a whole number >= {low}, got {v!r}")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                raise InvalidArgumentError(f"{name} must be a number in [0, 1], got {v!r}")
        for name in ("stability_score_offset", "mask_threshold", "crop_overlap_ratio"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise InvalidArgumentError(f"{name} must be a finite number, got {v!r}")
        if not 0.0 <= self.crop_overlap_ratio < 1.0:
            raise InvalidArgumentError(f"crop_overlap_ratio must be in [0, 1), got {self.crop_overlap_ratio!r}")
        if self.point_grids is not None:
            grids = tuple(np.asarray(g, dtype=np.float64) for g in self.point_grids)
            for i, g in enumerate(grids):
                if g.ndim != 2 or g.shape[1] != 2 or g.size and (g.min() < 0 or g.max() > 1):
                    raise InvalidArgumentError(
                        f"point_grids[{i}] must be a (P, 2) array of xy in [0, 1], got shape {g.shape}")
            if len(grids) < self.crop_n_layers + 1:
                raise InvalidArgumentError(
                    f"point_grids must hold one grid per crop layer ({self.crop_n_layers + 1}), got {len(grids)}")
            object.__setattr__(self, "point_grids", grids)

    @classmethod
    def for_engine(cls, segmenter: Any = None, **overrides: Any) -> "GenerateSettings":
        """Settings for ``segmenter``'s family (its ``generate_defaults``), then ``overrides``
        (unknown names raise :class:`~lang_sam.errors.InvalidArgumentError`). Giving
        ``point_grids`` turns ``points_per_side`` off unless both are given.

        Raises:
            InvalidArgumentError: an unknown setting name, or a value :class:`GenerateSettings`
                refuses.
        """
        known = {f.name for f in fields(cls)}
        family = dict(getattr(segmenter, "generate_defaults", {}) or {})
        for source, values in (("engine defaults", family), ("arguments", overrides)):
            unknown = sorted(set(values) - known)
            if unknown:
                raise InvalidArgumentError(
                    f"unknown generate setting(s) in {source}: {', '.join(unknown)}; expected some of "
                    f"{', '.join(sorted(known))}")
        values = {**family, **overrides}
        if values.get("point_grids") is not None and "points_per_side" not in overrides:
            values["points_per_side"] = None
        return cls(**values)

    def grids(self) -> list[np.ndarray]:
        """The point grid of each crop layer, ``(P, 2)`` float64 xy in [0, 1]."""
        if self.point_grids is not None:
            return list(self.point_grids)
        assert self.points_per_side is not None  # __post_init__: one of the two is set
        return layer_point_grids(self.points_per_side, self.crop_n_layers, self.crop_n_points_downscale_factor)

    def config(self) -> dict:
        """JSON-able settings (a run's record compares them on resume)."""
        out = asdict(self)
        if self.point_grids is not None:
            out["point_grids"] = [g.tolist() for g in self.point_grids]
        return out


# --------------------------------------------------------------------------------------------
# The pieces (the same arithmetic as segment_anything.utils.amg, so results agree bit for bit)
# --------------------------------------------------------------------------------------------

def point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` float64 xy in [0, 1]: cell centres of an ``n x n`` grid, row by row."""
    offset = 1 / (2 * n_per_side)
    one_side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(one_side[None, :], (n_per_side, 1))
    ys = np.tile(one_side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One :func:`point_grid` per crop layer ``i`` (0 = the whole image), of
    ``int(n_per_side / scale_per_layer ** i)`` points per side."""
    return [point_grid(int(n_per_side / (scale_per_layer ** i))) for i in range(n_layers + 1)]


def crop_boxes(image_size: tuple[int, int], n_layers: int, overlap_ratio: float
               ) -> tuple[list[list[int]], list[int]]:
    """The crops of the generator: ``([x0, y0, x1, y1], ...)`` (``x1``/``y1`` exclusive) and each
    one's layer. Layer 0 is the whole image; layer ``i`` cuts it into ``2**i x 2**i`` crops that
    overlap by ``overlap_ratio * short side * 2 / 2**i`` pixels."""
    im_h, im_w = image_size
    short_side = min(im_h, im_w)
    boxes, layers = [[0, 0, im_w, im_h]], [0]

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for i_layer in range(n_layers):
        n_per_side = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_per_side))
        crop_w, crop_h = crop_len(im_w, n_per_side, overlap), crop_len(im_h, n_per_side, overlap)
        xs = [int((crop_w - overlap) * i) for i in range(n_per_side)]
        ys = [int((crop_h - overlap) * i) for i in range(n_per_side)]
        for x0, y0 in product(xs, ys):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(i_layer + 1)
    return boxes, layers


def stability_scores(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """``(N,)`` float32: for ``(N, H, W)`` logits, pixels over ``mask_threshold + offset`` divided
    by pixels over ``mask_threshold - offset`` (NaN for a mask empty at both)."""
    high = (logits > (mask_threshold + offset)).sum(-1, dtype=torch.int32).sum(-1, dtype=torch.int32)
    low = (logits > (mask_threshold - offset)).sum(-1, dtype=torch.int32).sum(-1, dtype=torch.int32)
    return high / low


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` int64 xyxy of ``(N, H, W)`` bool masks: first and last (inclusive) column and row
    holding a True pixel; ``(0, 0, 0, 0)`` for an empty mask."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64)
    rows, cols = masks.any(dim=-1), masks.any(dim=-2)

    def edges(hit: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(size)[None, :]
        last = (hit * idx).amax(dim=-1)
        first = (idx + size * (~hit)).amin(dim=-1)
        return first, last

    top, bottom = edges(rows, h)
    left, right = edges(cols, w)
    out = torch.stack([left, top, right, bottom], dim=-1)
    empty = (right < left) | (bottom < top)
    return out * (~empty)[:, None]


def _near_crop_edge(boxes: torch.Tensor, crop: Sequence[int], image_box: Sequence[int],
                    atol: float = 20.0) -> torch.Tensor:
    """``(N,)`` bool: boxes (crop frame, xyxy) within ``atol`` px of an edge of ``crop`` that is
    not an edge of the image."""
    crop_t = torch.as_tensor(crop, dtype=torch.float)
    image_t = torch.as_tensor(image_box, dtype=torch.float)
    x0, y0 = crop[0], crop[1]
    b = (boxes + torch.tensor([[x0, y0, x0, y0]])).float()
    near_crop = torch.isclose(b, crop_t[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(b, image_t[None, :], atol=atol, rtol=0)
    return torch.any(near_crop & ~near_image, dim=1)


def remove_small_regions(mask: np.ndarray, area: int, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or remove islands (``"islands"``) of under ``area`` pixels
    (8-connected) in an ``(H, W)`` bool mask; returns ``(mask, changed)``. When every island is
    small, the largest is kept. Segment Anything's post-processing (needs OpenCV)."""
    import cv2

    holes = mode == "holes"
    work = (holes ^ mask).astype(np.uint8)
    n_labels, regions, stats, _ = cv2.connectedComponentsWithStats(work, 8)
    sizes = stats[:, -1][1:]  # row 0 is the background label
    small = [i + 1 for i, s in enumerate(sizes) if s < area]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(n_labels) if i not in fill]
        if not fill:  # every island is small: keep the largest
            fill = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True


# --------------------------------------------------------------------------------------------
# The algorithm
# --------------------------------------------------------------------------------------------

@dataclass
class _Kept:
    """Masks kept so far: crops, and per mask its box (xyxy, inclusive, image px), predicted IoU,
    stability score, point (image px) and crop box."""

    masks: list[CropMask]
    boxes: torch.Tensor
    iou: torch.Tensor
    stability: torch.Tensor
    points: torch.Tensor
    crops: torch.Tensor

    @classmethod
    def empty(cls) -> "_Kept":
        return cls([], torch.zeros((0, 4), dtype=torch.int64), torch.zeros(0), torch.zeros(0),
                   torch.zeros((0, 2), dtype=torch.float64), torch.zeros((0, 4), dtype=torch.int64))

    @classmethod
    def cat(cls, parts: Sequence["_Kept"]) -> "_Kept":
        if not parts:
            return cls.empty()
        return cls([m for p in parts for m in p.masks], torch.cat([p.boxes for p in parts]),
                   torch.cat([p.iou for p in parts]), torch.cat([p.stability for p in parts]),
                   torch.cat([p.points for p in parts]), torch.cat([p.crops for p in parts]))

    def take(self, idx: torch.Tensor) -> "_Kept":
        idx = torch.as_tensor(idx, dtype=torch.int64).reshape(-1)
        return _Kept([self.masks[i] for i in idx.tolist()], self.boxes[idx], self.iou[idx],
                     self.stability[idx], self.points[idx], self.crops[idx])

    def __len__(self) -> int:
        return len(self.masks)


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    from torchvision.ops import batched_nms

    if len(boxes) == 0:
        return torch.zeros((0,), dtype=torch.int64)
    return batched_nms(boxes.float(), scores.float(), torch.zeros(len(boxes)), iou_threshold=iou)


def generate(
    segmenter: Any,
    image: np.ndarray,
    settings: GenerateSettings | None = None,
    *,
    encode: Callable[[np.ndarray, tuple[int, int, int, int]], Any] | None = None,
    progress: Progress | None = None,
) -> GeneratedMasks:
    """Every mask of ``image`` (``HxWx3`` uint8 RGB) that SAM's automatic mask generator keeps,
    computed with ``segmenter`` (a :class:`~lang_sam.models.base.Segmenter`) and ``settings``
    (default: :meth:`GenerateSettings.for_engine` of ``segmenter``). See the module doc.

    ``encode(pixels, crop_box)`` gives the encoding of a crop (default:
    ``segmenter.encode(pixels)``); the facade passes one that reuses the cached encoding of the
    whole image. ``progress("generate", points_done, points_total)`` is called after each batch
    of points (and once with 0 first). Returns a :class:`~lang_sam.results.GeneratedMasks`.

    Raises:
        InvalidArgumentError: ``image`` is not an ``HxWx3`` uint8 array; ``settings`` left out and
            the segmenter's defaults refused (:meth:`GenerateSettings.for_engine`).
    """
    settings = GenerateSettings.for_engine(segmenter) if settings is None else settings
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InvalidArgumentError(f"image must be an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}")
    H, W = image.shape[:2]
    encode = encode if encode is not None else (lambda pixels, box: segmenter.encode(pixels))
    report = progress if progress is not None else (lambda stage, done, total: None)
    boxes, layers = crop_boxes((H, W), settings.crop_n_layers, settings.crop_overlap_ratio)
    grids = settings.grids()
    total = sum(len(grids[layer]) for layer in layers)
    done = 0
    report("generate", 0, total)
    parts = []
    for box, layer in zip(boxes, layers):
        x0, y0, x1, y1 = box
        crop = image[y0:y1, x0:x1, :]
        segmenter.use(encode(crop, (int(x0), int(y0), int(x1), int(y1))))
        points = grids[layer] * np.array(crop.shape[:2])[None, ::-1]
        per_point = 4 * (3 if settings.multimask_output else 1) * crop.shape[0] * crop.shape[1]
        step = max(1, min(settings.points_per_batch, LOGITS_BYTES // per_point))
        found = []
        for start in range(0, len(points), step):
            batch = points[start:start + step]
            found.append(_batch(segmenter, batch, box, (H, W), settings))
            done += len(batch)
            report("generate", done, total)
        kept = _Kept.cat(found)
        kept = kept.take(_nms(kept.boxes, kept.iou, settings.box_nms_thresh))
        offset = torch.tensor([x0, y0, x0, y0])
        kept.boxes = kept.boxes + offset
        kept.points = kept.points + torch.tensor([[x0, y0]], dtype=kept.points.dtype)
        kept.crops = torch.tensor([box] * len(kept), dtype=torch.int64).reshape(-1, 4)
        parts.append(kept)
    kept = _Kept.cat(parts)
    if len(boxes) > 1 and len(kept):  # duplicates across crops: prefer the smaller crop's
        c = kept.crops
        scores = 1 / ((c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1]))  # int64 areas, as torchvision's box_area
        kept = kept.take(_nms(kept.boxes, scores, settings.crop_nms_thresh))
    if settings.min_mask_region_area > 0 and len(kept):
        kept = _remove_small(kept, settings.min_mask_region_area,
                             max(settings.box_nms_thresh, settings.crop_nms_thresh))
    if not len(kept):
        return GeneratedMasks.empty((H, W))
    return GeneratedMasks(
        masks=torch.from_numpy(stack_dense(kept.masks, (H, W))),
        boxes=kept.boxes.to(torch.float32),
        areas=torch.tensor([m.area for m in kept.masks], dtype=torch.int64),
        iou_scores=kept.iou.to(torch.float32),
        stability_scores=kept.stability.to(torch.float32),
        point_coords=kept.points.to(torch.float32),
        crop_boxes=kept.crops.to(torch.float32),
        image_size=(H, W),
    )


def _batch(segmenter: Any, points: np.ndarray, crop: list[int], image_size: tuple[int, int],
           s: GenerateSettings) -> _Kept:
    """One batch of grid ``points`` (``(b, 2)`` float64 crop pixels) on the crop in use: the masks
    that pass the filters, as crops in image pixels (boxes and points still in crop pixels)."""
    H, W = image_size
    labels = np.ones((len(points), 1), dtype=np.int64)
    out = segmenter.predict_logits(points=points[:, None, :], point_labels=labels,
                                   multimask_output=s.multimask_output)
    c = out.logits.shape[1]
    logits, iou = out.logits.flatten(0, 1), out.iou_scores.flatten(0, 1)
    pts = torch.from_numpy(np.repeat(points, c, axis=0))
    if s.use_m2m:  # one refinement of each mask, prompted by its point and its own logits
        low = out.low_res_logits.flatten(0, 1)
        refined = []
        for start in range(0, len(pts), s.points_per_batch):
            part = slice(start, start + s.points_per_batch)
            r = segmenter.predict_logits(
                points=pts[part].numpy()[:, None, :], point_labels=np.ones((len(pts[part]), 1), dtype=np.int64),
                mask_input=low[part][:, None], multimask_output=False)
            refined.append(r)
        logits = torch.cat([r.logits[:, 0] for r in refined])
        iou = torch.cat([r.iou_scores[:, 0] for r in refined])
    del out
    keep = torch.ones(len(iou), dtype=torch.bool)
    if s.pred_iou_thresh > 0.0:
        keep &= iou > s.pred_iou_thresh
    logits, iou, pts = logits[keep], iou[keep], pts[keep]
    stability = stability_scores(logits, s.mask_threshold, s.stability_score_offset)
    if s.stability_score_thresh > 0.0:
        keep = stability >= s.stability_score_thresh
        logits, iou, pts, stability = logits[keep], iou[keep], pts[keep], stability[keep]
    masks = logits > s.mask_threshold
    del logits
    boxes = masks_to_boxes(masks)
    keep = ~_near_crop_edge(boxes, crop, [0, 0, W, H])
    if not torch.all(keep):
        masks, iou, pts, stability, boxes = masks[keep], iou[keep], pts[keep], stability[keep], boxes[keep]
    crops = [CropMask.from_window(m, crop[0], crop[1], image_size) for m in masks.numpy()]
    return _Kept(crops, boxes, iou, stability, pts, torch.zeros((len(crops), 4), dtype=torch.int64))


def _remove_small(kept: _Kept, area: int, nms_thresh: float) -> _Kept:
    """Segment Anything's ``postprocess_small_regions``: holes and islands under ``area`` pixels
    removed from each mask (on the full-size mask, one at a time), then box NMS preferring the
    masks it did not change."""
    size = kept.masks[0].image_size
    new, unchanged = [], []
    for m in kept.masks:
        dense = m.to_dense()
        dense, changed_holes = remove_small_regions(dense, area, "holes")
        dense, changed_islands = remove_small_regions(dense, area, "islands")
        new.append(CropMask.from_window(dense, 0, 0, size))
        unchanged.append(float(not (changed_holes or changed_islands)))
    boxes = torch.stack([_crop_box(m) for m in new])
    keep = _nms(boxes, torch.tensor(unchanged), nms_thresh)
    out = kept.take(keep)
    for j, i in enumerate(keep.tolist()):
        if unchanged[i] == 0.0:
            out.masks[j] = new[i]
            out.boxes[j] = boxes[i]
    return out


def _crop_box(m: CropMask) -> torch.Tensor:
    """A tight crop's box, xyxy inclusive (as :func:`masks_to_boxes`); empty: zeros."""
    if m.area == 0:
        return torch.zeros(4, dtype=torch.int64)
    x0, y0, x1, y1 = m.bbox
    return torch.tensor([x0, y0, x1 - 1, y1 - 1], dtype=torch.int64)

