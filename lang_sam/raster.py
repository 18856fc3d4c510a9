"""Map rasters read window by window: band choice, one 8-bit stretch per raster, nodata.

A :class:`RasterSource` is what the tiled pipeline (:mod:`lang_sam.pipeline`) reads tiles and SAM
windows from when the image is a file GDAL opens (GeoTIFF, Cloud-Optimized GeoTIFF, JPEG 2000,
VRT, ...): it never reads the whole raster, so memory is bounded by the models plus a few windows.

- **Bands**: ``bands=None`` takes the bands the file marks red, green and blue (GDAL's colour
  interpretation), else bands 1, 2, 3, else band 1 three times (a single-band raster); ``(3, 2,
  1)`` or ``(4,)`` choose (1-based band numbers; one band is repeated as grey).
- **Stretch to 8 bits** (:class:`Stretch`): 8-bit bands are taken as they are; any other type is
  mapped linearly from its 2nd to its 98th percentile (:data:`STRETCH_PERCENTILES`) of valid
  pixels to 0..255, clipped. The percentiles are computed **once per raster** on a decimated read
  of at most :data:`STRETCH_SAMPLE` pixels a side (GDAL uses the overviews when there are some),
  so every tile is scaled alike and neighbouring tiles agree.
- **Nodata**: a pixel is valid when every chosen band is (the file's nodata value, its internal
  mask or alpha band); invalid pixels are black in the tile given to the models, and a tile with
  no valid pixel is skipped (:meth:`RasterSource.window` returns None).
- **Unreadable blocks**: a window whose read fails is read again block by block; blocks that still
  fail are treated as nodata and listed in :attr:`RasterSource.failed` (raster pixels ``(x0, y0,
  x1, y1)``), the rest of the raster is used.

Coordinates are raster pixels, ``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive, as the tile grid's
(:mod:`lang_sam.tiling`). Needs the ``[geo]`` extra (rasterio), imported when a raster is opened.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from lang_sam.errors import GeoNotInstalledError, InvalidRasterError, UnknownBandError

logger = logging.getLogger(__name__)

__all__ = [
    "STRETCH_PERCENTILES", "STRETCH_SAMPLE", "GDAL_CACHE_MB", "Stretch", "RasterSource", "require_geo",
    "choose_bands", "compute_stretch", "gdal_env",
]

#: The low and high percentiles of valid pixels that a non-8-bit band is stretched between.
STRETCH_PERCENTILES = (2.0, 98.0)
#: The stretch's percentiles are computed on a read of at most this many pixels a side.
STRETCH_SAMPLE = 1024
#: GDAL's block cache while lang-sam reads or writes a raster, in MiB (GDAL's default is 5 % of the
#: machine's memory, which a large raster fills); a ``GDAL_CACHEMAX`` in the environment wins.
GDAL_CACHE_MB = 64

Box = tuple[int, int, int, int]


def require_geo() -> Any:
    """The ``rasterio`` module (and a check that shapely and pyproj import).

    Raises:
        GeoNotInstalledError: the ``[geo]`` extra is not installed.
    """
    try:
        import pyproj  # noqa: F401
        import rasterio
        import shapely  # noqa: F401
    except ImportError as exc:
        raise GeoNotInstalledError(
            f'map rasters need rasterio, shapely and pyproj ({exc.name} is missing): pip install "lang-sam[geo]"',
            missing=exc.name or "",
        ) from exc
    return rasterio


def gdal_env() -> Any:
    """A ``rasterio.Env`` bounding GDAL's block cache to :data:`GDAL_CACHE_MB` (unless
    ``GDAL_CACHEMAX`` is set in the environment), so that memory does not grow with the raster.

    Raises:
        GeoNotInstalledError: the ``[geo]`` extra is not installed.
    """
    rasterio = require_geo()
    if "GDAL_CACHEMAX" in os.environ:
        return rasterio.Env()
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)


@dataclass(frozen=True)
class Stretch:
    """A linear map of each chosen band to 0..255: ``(value - low) * 255 / (high - low)``, rounded
    and clipped (NaN: 0); ``low``/``high`` one per band. 8-bit bands get ``(0, 255)``: unchanged."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def apply(self, data: np.ndarray) -> np.ndarray:
        """``(C, h, w)`` band values -> ``(C, h, w)`` uint8."""
        data = np.asarray(data)
        if data.dtype == np.uint8 and all(v == 0.0 for v in self.low) and all(v == 255.0 for v in self.high):
            return data  # the identity, without the arithmetic
        lo = np.asarray(self.low, np.float64)[:, None, None]
        hi = np.asarray(self.high, np.float64)[:, None, None]
        span = np.where(hi > lo, hi - lo, 1.0)
        out = (np.asarray(data, np.float64) - lo) * (255.0 / span)
        out = np.clip(np.rint(out), 0, 255)
        if np.issubdtype(data.dtype, np.floating):
            out[np.isnan(out)] = 0  # NaN nodata (masked by the caller): 0, not an undefined cast
        return out.astype(np.uint8)

    def to_dict(self) -> dict:
        return {"low": list(self.low), "high": list(self.high)}


def choose_bands(dataset: Any, bands: Sequence[int] | None, path: str = "") -> tuple[int, int, int]:
    """The three 1-based band numbers read as R, G, B (see the module's text).

    Raises:
        UnknownBandError: a band the raster lacks, or not 1 or 3 band numbers.
    """
    count = int(dataset.count)
    if bands is None:
        from rasterio.enums import ColorInterp

        interp = list(dataset.colorinterp)
        want = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        if all(c in interp for c in want):
            return tuple(interp.index(c) + 1 for c in want)  # type: ignore[return-value]
        return (1, 2, 3) if count >= 3 else (1, 1, 1)
    given = tuple(bands)
    ok = len(given) in (1, 3) and all(isinstance(b, (int, np.integer)) and not isinstance(b, bool)
                                      for b in given)
    if not ok:
        raise UnknownBandError(f"bands must be 1 or 3 band numbers, got {given!r}", path=path, bands=given,
                               count=count, expected="1 or 3 band numbers", got=repr(given))
    bad = [b for b in given if not 1 <= int(b) <= count]
    if bad:
        raise UnknownBandError(
            f"{path or 'the raster'} has bands 1..{count}; band {bad[0]} does not exist",
            path=path, bands=given, count=count, expected=f"bands in 1..{count}", got=str(bad[0]))
    b = [int(v) for v in given]
    return (b[0], b[0], b[0]) if len(b) == 1 else (b[0], b[1], b[2])


def _valid(masked: np.ndarray) -> np.ndarray:
    """``(h, w)`` bool: every band valid."""
    return np.asarray(~np.ma.getmaskarray(masked).any(axis=0))


def compute_stretch(dataset: Any, bands: Sequence[int]) -> Stretch:
    """The raster's :class:`Stretch` for ``bands``: (0, 255) for 8-bit bands, else the
    :data:`STRETCH_PERCENTILES` of valid pixels on a decimated read (see the module's text)."""
    n = len(bands)
    if all(dataset.dtypes[b - 1] == "uint8" for b in bands):
        return Stretch((0.0,) * n, (255.0,) * n)
    scale = max(dataset.width, dataset.height) / STRETCH_SAMPLE
    h, w = (max(1, int(dataset.height / scale)), max(1, int(dataset.width / scale))) if scale > 1 else \
        (dataset.height, dataset.width)
    try:
        data = dataset.read(list(bands), out_shape=(n, h, w), masked=True)
    except Exception as exc:  # an unreadable block: sample what reads
        logger.warning("%s: decimated read failed (%s); stretching on the blocks that read", dataset.name, exc)
        data = _sample_blocks(dataset, bands)
    valid = _valid(data)
    lo, hi = [], []
    for c in range(n):
        v = np.asarray(data[c])[valid]
        if v.size == 0:
            a, b = 0.0, 255.0
        else:
            a, b = (float(q) for q in np.percentile(v.astype(np.float64), STRETCH_PERCENTILES))
        lo.append(a)
        hi.append(b)
    return Stretch(tuple(lo), tuple(hi))


def _sample_blocks(dataset: Any, bands: Sequence[int]) -> np.ma.MaskedArray:
    """Up to 64 small windows spread over the raster, those that read, side by side."""
    from rasterio.windows import Window

    parts = []
    for fy in np.linspace(0, 1, 8, endpoint=False):
        for fx in np.linspace(0, 1, 8, endpoint=False):
            x, y = int(fx * dataset.width), int(fy * dataset.height)
            win = Window(x, y, min(32, dataset.width - x), min(32, dataset.height - y))
            try:
                parts.append(dataset.read(list(bands), window=win, masked=True).reshape(len(bands), 1, -1))
            except Exception:
                continue
    if not parts:
        return np.ma.masked_all((len(bands), 1, 1))
    return np.ma.concatenate(parts, axis=2)


class RasterSource:
    """A raster opened for window reads (see the module's text). ``size`` is ``(W, H)``;
    ``transform`` the affine pixel -> map transform; ``crs`` the file's CRS or None. Picklable
    (it reopens the file): a Ray worker reads its own tiles.

    Raises:
        GeoNotInstalledError: the ``[geo]`` extra is missing.
        InvalidRasterError: GDAL cannot open ``path``.
        UnknownBandError: ``bands`` names a band the raster lacks.
    """

    def __init__(self, path: str | Path, bands: Sequence[int] | None = None, *, stretch: Stretch | None = None):
        rasterio = require_geo()
        self.path = str(path)
        self._given = None if bands is None else tuple(bands)
        try:
            self.dataset = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            raise InvalidRasterError(f"cannot open {self.path} as a raster: {exc}", path=self.path,
                                     expected="a raster GDAL opens", got=str(exc)) from exc
        ds = self.dataset
        self.bands = choose_bands(ds, self._given, self.path)
        self.size = (int(ds.width), int(ds.height))
        self.transform = ds.transform
        self.crs = ds.crs
        self.stretch = stretch if stretch is not None else compute_stretch(ds, self.bands)
        self.failed: list[Box] = []
        self._last: tuple[Box, np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "bands": self._given, "stretch": self.stretch, "failed": self.failed}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["bands"], stretch=state["stretch"])  # type: ignore[misc]
        self.failed = list(state["failed"])

    def __enter__(self) -> "RasterSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.dataset.close()

    def read(self, box: Box) -> tuple[np.ndarray, np.ndarray]:
        """The window ``box`` as ``(h, w, 3)`` uint8 RGB (stretched; invalid pixels 0) and its
        ``(h, w)`` bool validity. The last window read is kept (a tile read for detection is
        often SAM's window too)."""
        box = tuple(int(v) for v in box)  # type: ignore[assignment]
        if self._last is not None and self._last[0] == box:
            return self._last[1], self._last[2]
        uniq = list(dict.fromkeys(self.bands))
        try:
            data, valid = self._read(box, uniq)
        except Exception as exc:
            logger.warning("%s: window %s did not read (%s); reading it block by block", self.path, box, exc)
            data, valid = self._read_blocks(box, uniq)
        if not valid.any():  # nodata (or unreadable) everywhere: nothing to stretch
            rgb = np.zeros((*valid.shape, 3), np.uint8)
        else:
            # Each chosen band with its own low/high (a band chosen twice has the same both times).
            lo, hi = dict(zip(self.bands, self.stretch.low)), dict(zip(self.bands, self.stretch.high))
            stretched = Stretch(tuple(lo[b] for b in uniq), tuple(hi[b] for b in uniq)).apply(data)
            rgb = np.ascontiguousarray(stretched[[uniq.index(b) for b in self.bands]].transpose(1, 2, 0))
            if not valid.all():
                rgb[~valid] = 0
        self._last = (box, rgb, valid)
        return rgb, valid

    def _read(self, box: Box, bands: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(C, h, w)`` values and ``(h, w)`` validity of ``box`` (GDAL's per-band masks: nodata,
        internal mask or alpha; a plain read and the masks cost about a tenth of a masked read)."""
        from rasterio.windows import Window

        x0, y0, x1, y1 = box
        window = Window(x0, y0, x1 - x0, y1 - y0)
        data = self.dataset.read(bands, window=window)
        valid = (self.dataset.read_masks(bands, window=window) != 0).all(axis=0)
        return data, valid

    def _read_blocks(self, box: Box, bands: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """``box`` read one internal block at a time; a block that fails is invalid and listed."""
        x0, y0, x1, y1 = box
        bh, bw = self.dataset.block_shapes[0]
        data = np.zeros((len(bands), y1 - y0, x1 - x0), dtype=self.dataset.dtypes[bands[0] - 1])
        valid = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        for by in range((y0 // bh) * bh, y1, bh):
            for bx in range((x0 // bw) * bw, x1, bw):
                cx0, cy0 = max(bx, x0), max(by, y0)
                cx1, cy1 = min(bx + bw, x1, self.size[0]), min(by + bh, y1, self.size[1])
                try:
                    part, ok = self._read((cx0, cy0, cx1, cy1), bands)
                except Exception as exc:
                    block = (bx, by, min(bx + bw, self.size[0]), min(by + bh, self.size[1]))
                    if block not in self.failed:
                        self.failed.append(block)
                        logger.warning("%s: block %s cannot be read (%s); treated as nodata", self.path, block, exc)
                    continue
                data[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = part
                valid[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = ok
        return data, valid

    def window(self, box: Box) -> Image.Image | None:
        """The window ``box`` as an RGB PIL image, or None when it has no valid pixel (nodata
        everywhere, or unreadable): the pipeline skips it."""
        rgb, valid = self.read(box)
        return Image.fromarray(rgb) if valid.any() else None

    def __repr__(self) -> str:
        W, H = self.size
        return f"RasterSource({self.path!r}, {W}x{H}, bands {self.bands}, crs {self.crs})"
