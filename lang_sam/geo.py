"""Text-prompted segmentation of map rasters: a GeoTIFF (or any raster GDAL opens) in, georeferenced
instances out.

:func:`predict_raster` runs the tiled pipeline (:mod:`lang_sam.pipeline`, :mod:`lang_sam.tiling`)
on a :class:`~lang_sam.raster.RasterSource`, which reads each tile and SAM window from the file, so
a raster of any size runs in the memory of the models plus a few windows; masks are crops and
what two tiles found twice is merged as for any large image. :func:`segment_raster` segments box
and point prompts given in map coordinates (any CRS, or a vector file). Both return a
:class:`GeoPrediction`: the :class:`~lang_sam.results.TiledPrediction` in raster pixels plus the
raster's affine transform and CRS, from which come polygons (raster CRS, holes kept), areas in
square metres, map-coordinate boxes, ``to_geodataframe()`` and ``to_supervision()``.

Coordinates: pixel ``(col, row)`` = ``(x, y)``, pixel ``(0, 0)``'s top-left corner is map
``transform @ (0, 0)``; a polygon traces pixel edges (a mask's outline is exact to the pixel).
A raster with no CRS gives polygons in pixel coordinates (identity transform) and a
:class:`~lang_sam.errors.NoCRSWarning`. Needs the ``[geo]`` extra.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from lang_sam import pipeline
from lang_sam.errors import (
    GeoNotInstalledError,
    InvalidArgumentError,
    NoCRSWarning,
    PromptOutsideRasterError,
    RasterTransformError,
)
from lang_sam.masks import CropMask
from lang_sam.raster import RasterSource, gdal_env, require_geo
from lang_sam.results import TiledPrediction
from lang_sam.tiling import TileSpec, sam_window
from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TILE", "EQUAL_AREA_CRS", "GeoPrediction", "predict_raster", "segment_raster", "open_raster",
    "crop_polygon", "area_m2", "to_crs", "map_boxes", "map_to_pixels", "read_vector_prompts",
]

#: The tile grid used on rasters when none is given (SAHI-like: 1024 px, 20 % overlap).
DEFAULT_TILE = TileSpec(1024, 0.2)
#: Areas of polygons in a geographic CRS are measured in this equal-area CRS (EASE-Grid 2.0 global).
EQUAL_AREA_CRS = "EPSG:6933"
#: A box prompt's edges are sampled at this many points when moved between CRSs (edges curve).
EDGE_SAMPLES = 21


def open_raster(path: str | Path, bands: Sequence[int] | None = None) -> RasterSource:
    """:class:`~lang_sam.raster.RasterSource` of ``path``, warning (:class:`NoCRSWarning`) when it
    has no CRS.

    Raises:
        GeoNotInstalledError, InvalidRasterError, UnknownBandError: as ``RasterSource``.
    """
    src = RasterSource(path, bands)
    if src.crs is None:
        warnings.warn(f"{src.path} has no coordinate reference system: outputs are in pixels", NoCRSWarning,
                      stacklevel=3)
    return src


@dataclass
class GeoPrediction:
    """Instances found on a raster. ``prediction``: the :class:`~lang_sam.results.TiledPrediction`
    in raster pixels (masks as crops); ``transform``: the raster's affine pixel -> map transform
    (identity without a CRS); ``crs``: a ``rasterio.crs.CRS`` or None; ``path``; ``failed``: the
    raster's blocks that could not be read (pixels ``(x0, y0, x1, y1)``, treated as nodata);
    ``simplify``: None (polygons trace pixel edges exactly) or a tolerance in map units that
    :meth:`polygons` simplifies them to (shapely's topology-preserving simplification)."""

    prediction: TiledPrediction
    transform: Any
    crs: Any
    path: str = ""
    failed: list[tuple[int, int, int, int]] = field(default_factory=list)
    simplify: float | None = None

    def __len__(self) -> int:
        return len(self.prediction.phrases)

    def polygons(self) -> list[Any]:
        """One shapely ``Polygon`` or ``MultiPolygon`` per instance, in the raster's CRS (pixel
        coordinates without one), holes kept; an empty mask gives an empty polygon; simplified to
        :attr:`simplify` when it is set."""
        polys = [crop_polygon(m, self.transform) for m in self.prediction.masks]
        if self.simplify:
            polys = [p.simplify(self.simplify, preserve_topology=True) for p in polys]
        return polys

    def map_boxes(self) -> np.ndarray:
        """``(N, 4)`` float64 ``minx, miny, maxx, maxy`` of the instances' pixel boxes in the
        raster's CRS (the envelope of the box's four corners: right for a rotated raster too)."""
        return map_boxes(self.prediction.boxes.numpy(), self.transform)

    def records(self) -> list[dict]:
        """One dict per instance: ``id`` (1-based, the instance raster's value), ``class``,
        ``score``, ``iou_score``, ``area_m2`` (None without a CRS) and ``geometry`` (shapely, raster CRS)."""
        p, out = self.prediction, []
        iou = p.iou_scores if p.iou_scores is not None else torch.zeros(len(p.phrases))
        for i, geom in enumerate(self.polygons()):
            out.append({"id": i + 1, "class": p.phrases[i], "score": float(p.logits[i]),
                        "iou_score": float(iou[i]), "area_m2": area_m2(geom, self.crs), "geometry": geom})
        return out

    def to_geodataframe(self) -> Any:
        """A ``geopandas.GeoDataFrame`` of :meth:`records` in the raster's CRS.

        Raises:
            GeoNotInstalledError: geopandas is not installed.
        """
        try:
            import geopandas
        except ImportError as exc:
            raise GeoNotInstalledError('to_geodataframe() needs geopandas: pip install "lang-sam[geo]"',
                                       missing="geopandas") from exc
        recs = self.records()
        columns = ["id", "class", "score", "iou_score", "area_m2"]
        data = {c: [r[c] for r in recs] for c in columns}
        return geopandas.GeoDataFrame(data, geometry=[r["geometry"] for r in recs],
                                      crs=self.crs.to_wkt() if self.crs is not None else None)

    def to_supervision(self, classes: Sequence[str] | None = None, *, compact: bool | None = None) -> Any:
        """The instances as a ``supervision.Detections`` in raster pixels
        (:meth:`lang_sam.TiledPrediction.to_supervision`).

        Raises:
            SupervisionNotInstalledError, InvalidClassesError: as ``TiledPrediction.to_supervision``.
        """
        return self.prediction.to_supervision(classes, compact=compact)

    def __repr__(self) -> str:
        return f"GeoPrediction({len(self)} instances on {self.path!r}, crs {self.crs}; {self.prediction!r})"


def _engines(model: Any) -> Any:
    return getattr(model, "engines", model)


def _result(tp: TiledPrediction, src: RasterSource) -> GeoPrediction:
    from affine import Affine

    transform = src.transform if src.crs is not None else Affine.identity()
    return GeoPrediction(tp, transform, src.crs, src.path, sorted(src.failed))


def predict_raster(model: Any, path: str | Path | RasterSource, text_prompt: str,
                   box_threshold: float = BOX_THRESHOLD, text_threshold: float = TEXT_THRESHOLD, *,
                   tile: TileSpec | None = None, bands: Sequence[int] | None = None,
                   progress: pipeline.Progress | None = None) -> GeoPrediction:
    """Detect and segment what ``text_prompt`` names on the raster at ``path``, tile by tile
    (``tile``, default :data:`DEFAULT_TILE`), read window by window; duplicates across tiles
    merged (:func:`lang_sam.pipeline.merge_tiles`). ``model``: a :class:`~lang_sam.LangSAM` or
    its :class:`~lang_sam.engines.Engines`; ``bands``: see :mod:`lang_sam.raster`.

    Raises:
        GeoNotInstalledError: the ``[geo]`` extra is missing.
        InvalidRasterError, UnknownBandError: ``path`` is no raster, ``bands`` does not fit it.
        InvalidPromptError, InvalidThresholdError: what :func:`lang_sam.pipeline.run` raises.
    """
    tile = tile or DEFAULT_TILE
    src = path if isinstance(path, RasterSource) else open_raster(path, bands)
    with gdal_env():
        out = pipeline.run(_engines(model), src, text_prompt, box_threshold, text_threshold,
                           select=[pipeline.merge_tiles(tile)], tile=tile, progress=progress)
    return _result(pipeline.tiled_prediction(out), src)


def segment_raster(model: Any, path: str | Path | RasterSource, *, boxes: Any = None, points: Any = None,
                   crs: Any = "EPSG:4326", vector: str | Path | None = None, tile: TileSpec | None = None,
                   bands: Sequence[int] | None = None) -> GeoPrediction:
    """SAM on box and point prompts in map coordinates: ``boxes`` ``(N, 4)`` ``minx, miny, maxx,
    maxy`` and ``points`` ``(K, 2)`` ``x, y`` (each point one object) in ``crs`` (anything pyproj
    takes; default longitude/latitude), or the features of a ``vector`` file (polygons: their
    bounds as boxes; points: points; in the file's CRS). Each prompt is segmented on a tile-sized
    window around it (:func:`lang_sam.tiling.sam_window`); instances come in the order boxes,
    then points, phrase ``""``, score 1.

    Raises:
        PromptOutsideRasterError: a box that does not overlap the raster, a point outside it.
        RasterTransformError: ``crs`` cannot be transformed to the raster's.
        InvalidArgumentError: no prompt, or malformed boxes / points.
        UnsupportedPromptError: a text segmenter (SAM 3) takes no box or point prompt.
    """
    tile = tile or DEFAULT_TILE
    src = path if isinstance(path, RasterSource) else open_raster(path, bands)
    if vector is not None:
        boxes, points, crs = read_vector_prompts(vector)
    b = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
    p = np.zeros((0, 2)) if points is None else np.asarray(points, np.float64).reshape(-1, 2)
    if not len(b) and not len(p):
        raise InvalidArgumentError("segment_raster needs boxes=, points= or vector= (got no prompt)")
    W, H = src.size
    px_boxes = np.array([_box_to_pixels(box, crs, src) for box in b]).reshape(-1, 4)
    px_points = map_to_pixels(p, crs, src.crs, src.transform, path=src.path) if len(p) else np.zeros((0, 2))
    for pt in px_points:
        if not (0 <= pt[0] < W and 0 <= pt[1] < H):
            raise PromptOutsideRasterError(
                f"point prompt at pixel ({pt[0]:.1f}, {pt[1]:.1f}) is outside the {W}x{H} raster {src.path}",
                path=src.path, prompt=tuple(pt), expected=f"0 <= x < {W}, 0 <= y < {H}",
                got=f"({pt[0]:.1f}, {pt[1]:.1f})")
    engines = _engines(model)
    masks, iou = [], []
    if len(px_boxes):
        m, s = pipeline.segment(engines, src, torch.as_tensor(px_boxes, dtype=torch.float32), tile=tile)
        masks.extend(m)
        iou.extend(s.tolist())
    tiles = tile.grid(W, H)
    for x, y in px_points:
        window = sam_window((x, y, x, y), tiles, (H, W), tile.size)
        pil = src.window(window)
        if pil is None:
            raise PromptOutsideRasterError(f"point prompt at pixel ({x:.1f}, {y:.1f}) is on nodata in {src.path}",
                                           path=src.path, prompt=(x, y), expected="a point on valid pixels",
                                           got="nodata")
        enc = engines.encode(pil)
        pred = engines.segment(enc, points=[[x - window[0], y - window[1]]])
        masks.append(CropMask.from_window(pred.masks[0, 0].numpy(), window[0], window[1], (H, W)))
        iou.append(float(pred.iou_scores[0, 0]))
    n = len(masks)
    point_boxes = np.array([_crop_box(m) for m in masks[len(px_boxes):]], np.float64).reshape(-1, 4)
    all_boxes = np.vstack([px_boxes, point_boxes])
    tp = TiledPrediction(masks, torch.as_tensor(all_boxes, dtype=torch.float32), [""] * n, torch.ones(n),
                         image_size=(H, W), iou_scores=torch.tensor(iou, dtype=torch.float32), tiles=tiles)
    return _result(tp, src)


def _crop_box(m: CropMask) -> list[float]:
    return [float(v) for v in m.bbox] if m.area else [0.0, 0.0, 0.0, 0.0]


def _box_to_pixels(box: np.ndarray, crs: Any, src: RasterSource) -> list[float]:
    """A map box (sampled along its edges) -> the envelope of its pixels, clipped to the raster."""
    x0, y0, x1, y1 = (float(v) for v in box)
    t = np.linspace(0.0, 1.0, EDGE_SAMPLES)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 - (x1 - x0) * t, np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y0), y0 + (y1 - y0) * t, np.full_like(t, y1), y1 - (y1 - y0) * t])
    px = map_to_pixels(np.stack([xs, ys], 1), crs, src.crs, src.transform, path=src.path)
    bx0, by0 = px.min(axis=0)
    bx1, by1 = px.max(axis=0)
    W, H = src.size
    if bx1 <= 0 or by1 <= 0 or bx0 >= W or by0 >= H:
        raise PromptOutsideRasterError(
            f"box prompt {[x0, y0, x1, y1]} ({crs}) is pixels ({bx0:.1f}, {by0:.1f}, {bx1:.1f}, {by1:.1f}), "
            f"outside the {W}x{H} raster {src.path}",
            path=src.path, prompt=(bx0, by0, bx1, by1), expected=f"a box overlapping (0, 0, {W}, {H})",
            got=f"({bx0:.1f}, {by0:.1f}, {bx1:.1f}, {by1:.1f})")
    return [max(bx0, 0.0), max(by0, 0.0), min(bx1, float(W)), min(by1, float(H))]


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------

def crop_polygon(crop: CropMask, transform: Any) -> Any:
    """The outline of ``crop``'s True pixels in map coordinates (``transform``: pixel -> map
    affine): a shapely ``Polygon`` or ``MultiPolygon`` tracing pixel edges, holes kept."""
    require_geo()
    from rasterio.features import shapes
    from shapely.geometry import Polygon, shape
    from shapely.ops import unary_union

    if not crop.area:
        return Polygon()
    from affine import Affine

    t = transform @ Affine.translation(crop.x0, crop.y0)
    mask = crop.mask.astype(np.uint8)
    parts = [shape(g) for g, _ in shapes(mask, mask=crop.mask, transform=t)]
    return parts[0] if len(parts) == 1 else unary_union(parts)


def to_crs(geoms: Sequence[Any], source: Any, target: Any) -> list[Any]:
    """shapely geometries moved from CRS ``source`` to ``target`` (x = easting / longitude).

    Raises:
        RasterTransformError: the CRSs cannot be transformed between, or a coordinate falls outside
            the target's domain.
    """
    import shapely

    tr = _transformer(source, target)

    def move(xy: np.ndarray) -> np.ndarray:
        try:
            x, y = tr.transform(xy[:, 0], xy[:, 1], errcheck=True)
        except Exception as exc:
            raise RasterTransformError(f"cannot transform coordinates from {source} to {target}: {exc}",
                                       source_crs=str(source), target_crs=str(target)) from exc
        out = np.stack([np.asarray(x, np.float64), np.asarray(y, np.float64)], 1)
        if not np.isfinite(out).all():
            raise RasterTransformError(f"cannot transform coordinates from {source} to {target}: "
                                       "a point falls outside the target's domain",
                                       source_crs=str(source), target_crs=str(target))
        return out

    return [shapely.transform(g, move) for g in geoms]


def _transformer(source: Any, target: Any) -> Any:
    require_geo()
    import pyproj

    def wkt(c: Any) -> Any:
        return c.to_wkt() if hasattr(c, "to_wkt") else c

    try:
        return pyproj.Transformer.from_crs(wkt(source), wkt(target), always_xy=True)
    except pyproj.exceptions.ProjError as exc:
        raise RasterTransformError(f"cannot transform coordinates from {source} to {target}: {exc}",
                                   source_crs=str(source), target_crs=str(target)) from exc


def area_m2(geom: Any, crs: Any) -> float | None:
    """The area of ``geom`` (in ``crs``) in square metres: in a projected CRS its planar area times
    the square of the CRS's unit in metres; in a geographic CRS, measured after moving it to
    :data:`EQUAL_AREA_CRS`. None without a CRS."""
    if crs is None:
        return None
    if geom.is_empty:
        return 0.0
    if crs.is_geographic:
        return float(to_crs([geom], crs, EQUAL_AREA_CRS)[0].area)
    factor = float(crs.linear_units_factor[1])
    return float(geom.area) * factor * factor


def map_boxes(boxes: np.ndarray, transform: Any) -> np.ndarray:
    """``(N, 4)`` xyxy pixel boxes -> ``(N, 4)`` ``minx, miny, maxx, maxy`` map envelopes of their
    four corners under ``transform``."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(b):
        return np.zeros((0, 4))
    a, bb, c, d, e, f = (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f)
    cx = np.stack([b[:, 0], b[:, 2], b[:, 2], b[:, 0]], 1)
    cy = np.stack([b[:, 1], b[:, 1], b[:, 3], b[:, 3]], 1)
    mx, my = a * cx + bb * cy + c, d * cx + e * cy + f
    return np.stack([mx.min(1), my.min(1), mx.max(1), my.max(1)], 1)


def map_to_pixels(xy: np.ndarray, crs: Any, raster_crs: Any, transform: Any, *, path: str = "") -> np.ndarray:
    """``(K, 2)`` map ``x, y`` in ``crs`` -> ``(K, 2)`` float pixel ``col, row`` of the raster
    (``raster_crs``, ``transform``). Without a raster CRS, ``xy`` are taken as pixels.

    Raises:
        RasterTransformError: ``crs`` cannot be transformed to the raster's.
    """
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if raster_crs is None:
        return xy
    tr = _transformer(crs, raster_crs)
    try:
        mx, my = tr.transform(xy[:, 0], xy[:, 1], errcheck=True)
    except Exception as exc:
        raise RasterTransformError(f"cannot transform prompt coordinates from {crs} to the raster's CRS: {exc}",
                                   path=path, source_crs=str(crs), target_crs=str(raster_crs)) from exc
    inv = ~transform
    cols, rows = inv @ (np.asarray(mx), np.asarray(my))
    return np.stack([np.asarray(cols, np.float64), np.asarray(rows, np.float64)], 1)


def read_vector_prompts(path: str | Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """``(boxes (N, 4), points (K, 2), crs)`` of a vector file's features (pyogrio): each
    polygon or line's bounds as a box, each point as a point, in the file's CRS (WKT).

    Raises:
        InvalidArgumentError: the file cannot be read or has no CRS.
    """
    require_geo()
    import pyogrio.raw
    import shapely

    try:
        meta, _, geometry, _ = pyogrio.raw.read(str(path))
    except Exception as exc:
        raise InvalidArgumentError(f"cannot read vector prompts from {path}: {exc}") from exc
    if not meta.get("crs"):
        raise InvalidArgumentError(f"vector prompts {path} have no CRS; expected a file with one")
    geoms = shapely.from_wkb(geometry)
    boxes = [g.bounds for g in geoms if g is not None and g.geom_type != "Point"]
    points = [(g.x, g.y) for g in geoms if g is not None and g.geom_type == "Point"]
    return np.array(boxes, np.float64).reshape(-1, 4), np.array(points, np.float64).reshape(-1, 2), meta["crs"]
