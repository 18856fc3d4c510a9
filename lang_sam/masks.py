"""Masks kept as crops: a binary mask of a large image stored as the small window that holds its
pixels, with that window's offset (:class:`CropMask`).

A 20000x20000 image with 500 detections cannot hold 500 full-size bool masks (200 GB); as crops
they take the objects' own sizes. The dataset writers (:mod:`lang_sam.labeling.formats`) read
crops directly: COCO RLE, polygons and PNGs are made from the crop and its offset, never from a
full-size array. :meth:`CropMask.to_dense` gives the full-size view when asked for.

This module imports only numpy (``pycocotools`` and ``cv2`` inside the functions that need them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from lang_sam.errors import InvalidMaskError

__all__ = ["MIN_AREA", "CropMask", "outer_contours", "is_crop_list", "stack_dense"]

#: Contours enclosing this many pixels or fewer are dropped by :func:`outer_contours`.
MIN_AREA = 100


def outer_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Outer contours (OpenCV ``(K, 1, 2)`` int32 x, y arrays) of an ``(H, W)`` binary numpy mask;
    contours of area :data:`MIN_AREA` or less are dropped."""
    import cv2

    arr = (np.asarray(mask) > 0).astype(np.uint8) * 255
    contours, _ = cv2.findContours(arr, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c for c in contours if cv2.contourArea(c) > MIN_AREA]


@dataclass(frozen=True, eq=False, repr=False)
class CropMask:
    """A binary mask of an image of ``image_size`` ``(H, W)``, stored as a crop.

    ``mask`` is the ``(h, w)`` bool crop; its top-left pixel is image pixel ``(x0, y0)``; every
    image pixel outside the crop is False. Coordinates are full-image pixels throughout.

    Raises:
        InvalidMaskError: ``mask`` is not 2-D, or the crop does not fit the image.
    """

    mask: np.ndarray
    x0: int
    y0: int
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        m = np.asarray(self.mask)
        if m.ndim != 2:
            raise InvalidMaskError(f"CropMask.mask must be 2-D (h, w), got shape {m.shape}")
        H, W = (int(v) for v in self.image_size)
        x0, y0 = int(self.x0), int(self.y0)
        h, w = m.shape
        if x0 < 0 or y0 < 0 or x0 + w > W or y0 + h > H:
            raise InvalidMaskError(
                f"crop of {w}x{h} at ({x0}, {y0}) does not fit the {W}x{H} image"
            )
        object.__setattr__(self, "mask", m if m.dtype == np.bool_ else m > 0)
        object.__setattr__(self, "x0", x0)
        object.__setattr__(self, "y0", y0)
        object.__setattr__(self, "image_size", (H, W))

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_window(cls, mask: Any, x0: int, y0: int, image_size: tuple[int, int], *,
                    tight: bool = True) -> "CropMask":
        """The mask ``mask`` ``(h, w)`` of the window at ``(x0, y0)``; ``tight`` trims it to the
        bounding box of its True pixels (an empty mask becomes a 0x0 crop).

        Raises:
            InvalidMaskError: ``mask`` is not 2-D, or the window does not fit the image.
        """
        crop = cls(np.asarray(mask), x0, y0, image_size)
        return crop.tight() if tight else crop

    @classmethod
    def from_dense(cls, mask: Any, *, tight: bool = True) -> "CropMask":
        """A full-size ``(H, W)`` mask (numpy or torch) as a crop (trimmed with ``tight``).

        Raises:
            InvalidMaskError: ``mask`` is not 2-D.
        """
        from lang_sam.validation import as_numpy

        m = as_numpy(mask)
        if m.ndim != 2:
            raise InvalidMaskError(f"mask must be 2-D (H, W), got shape {m.shape}")
        return cls.from_window(m, 0, 0, m.shape, tight=tight)

    def tight(self) -> "CropMask":
        """The same mask on the smallest crop holding its True pixels."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        if len(rows) == 0:
            return CropMask(np.zeros((0, 0), bool), 0, 0, self.image_size)
        cols = np.flatnonzero(self.mask.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        if (r0, c0) == (0, 0) and (r1, c1) == self.mask.shape:
            return self
        return CropMask(self.mask[r0:r1, c0:c1].copy(), self.x0 + c0, self.y0 + r0, self.image_size)

    # ----------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image (the dense mask's shape)."""
        return self.image_size

    @property
    def area(self) -> int:
        """Number of True pixels."""
        return int(np.count_nonzero(self.mask))

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """The crop's ``(x0, y0, x1, y1)`` in image pixels, ``x1``/``y1`` exclusive."""
        h, w = self.mask.shape
        return self.x0, self.y0, self.x0 + w, self.y0 + h

    @property
    def nbytes(self) -> int:
        return int(self.mask.nbytes)

    def to_dense(self) -> np.ndarray:
        """The full ``(H, W)`` bool mask (``H * W`` bytes)."""
        out = np.zeros(self.image_size, dtype=bool)
        x0, y0, x1, y1 = self.bbox
        out[y0:y1, x0:x1] = self.mask
        return out

    def to_rle(self) -> dict:
        """COCO compressed RLE ``{"size": [H, W], "counts": str}`` of the full-size mask, computed
        from the crop: column-major run lengths of the True runs, offset into the image, then
        ``pycocotools``' compression. Equal to :func:`lang_sam.labeling.formats.mask_to_rle` of
        :meth:`to_dense`, without the full-size array."""
        from pycocotools import mask as mask_util

        H, W = self.image_size
        m = self.mask
        total = H * W
        if m.size == 0 or not m.any():
            counts = [total]
        else:
            padded = np.zeros((m.shape[0] + 2, m.shape[1]), dtype=np.int8)
            padded[1:-1] = m
            step = np.diff(padded, axis=0).T  # (w, h + 1): column-major order when scanned
            s_col, s_row = np.nonzero(step == 1)
            e_col, e_row = np.nonzero(step == -1)
            starts = (self.x0 + s_col).astype(np.int64) * H + self.y0 + s_row
            ends = (self.x0 + e_col).astype(np.int64) * H + self.y0 + e_row
            joined = ends[:-1] == starts[1:]  # a run going on from one column's foot to the next's head
            starts = starts[np.r_[True, ~joined]]
            ends = ends[np.r_[~joined, True]]
            bounds = np.empty(2 * len(starts) + 2, dtype=np.int64)
            bounds[0], bounds[-1] = 0, total
            bounds[1:-1:2], bounds[2:-1:2] = starts, ends
            counts = np.diff(bounds).tolist()
            if counts[-1] == 0:  # ends on a True pixel: pycocotools writes no empty last run
                counts.pop()
        rle = mask_util.frPyObjects({"size": [H, W], "counts": counts}, H, W)
        return {"size": [int(H), int(W)], "counts": rle["counts"].decode("ascii")}

    def contours(self) -> list[np.ndarray]:
        """Outer contours in image pixels, as :func:`outer_contours` gives them for
        :meth:`to_dense` (OpenCV ``(K, 1, 2)`` int32 arrays; tiny ones dropped), from the crop."""
        if self.mask.size == 0:
            return []
        padded = np.pad(self.mask, 1)  # a blank border, as around the crop in the full mask
        shift = np.array([self.x0 - 1, self.y0 - 1], dtype=np.int32)
        return [c + shift for c in outer_contours(padded)]

    def __repr__(self) -> str:
        x0, y0, x1, y1 = self.bbox
        H, W = self.image_size
        return f"CropMask({x1 - x0}x{y1 - y0} at ({x0}, {y0}) of a {W}x{H} image, area {self.area})"


def is_crop_list(masks: Any) -> bool:
    """True for a list or tuple whose items are all :class:`CropMask` (an empty list is not:
    it says nothing of the form)."""
    return isinstance(masks, (list, tuple)) and len(masks) > 0 and all(
        isinstance(m, CropMask) for m in masks
    )


def stack_dense(masks: Sequence[CropMask], image_size: tuple[int, int] | None = None) -> np.ndarray:
    """``(N, H, W)`` bool array of the crops' dense masks (``N * H * W`` bytes): only on request.

    Raises:
        InvalidMaskError: an empty list without ``image_size``; a crop of another image size.
    """
    if image_size is None:
        if not masks:
            raise InvalidMaskError("an empty list of crops needs image_size to give a (0, H, W) array")
        image_size = masks[0].image_size
    out = np.zeros((len(masks), *image_size), dtype=bool)
    for i, m in enumerate(masks):
        if m.image_size != tuple(image_size):
            raise InvalidMaskError(f"crop {i} is of a {m.image_size} image, expected {tuple(image_size)} (H, W)")
        x0, y0, x1, y1 = m.bbox
        out[i, y0:y1, x0:x1] = m.mask
    return out
