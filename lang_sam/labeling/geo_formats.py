"""Map outputs of a :class:`~lang_sam.geo.GeoPrediction`, each readable by the standard tools (QGIS,
GDAL, geopandas):

- :func:`write_gpkg`: a GeoPackage in the raster's CRS, one ``MultiPolygon`` feature per instance
  with ``id`` (1-based, the instance raster's value), ``class``, ``class_id``, ``score``,
  ``iou_score``, ``area_m2`` (see :func:`lang_sam.geo.area_m2`); holes kept, never simplified;
- :func:`write_geojson`: the same features in EPSG:4326 (longitude, latitude), as RFC 7946
  requires (GDAL's ``RFC7946=YES``: counter-clockwise outer rings, 7 decimals); a raster with no
  CRS gives pixel coordinates (GeoJSON has no way to say so: readers assume EPSG:4326; use the
  GeoPackage, which has none, for such rasters);
- :func:`write_label_rasters`: an instance-id and a class-id GeoTIFF (tiled 256 x 256, deflate,
  the input's size, transform and CRS; 0 is background). Where instances overlap the higher-scoring
  one wins. Written crop by crop, never a full-size array; blocks without an instance are not
  stored (GDAL's ``SPARSE_OK``: they read as 0), so a large raster's label files stay small;
- :func:`geo_record`: the JSON record of one raster: per instance its pixel box (``bbox``, COCO
  ``x, y, w, h``) beside its map box (``bbox_map``, ``minx, miny, maxx, maxy`` in ``crs``).

Every file is written under a temporary name and renamed (:mod:`lang_sam.labeling.atomic`).
Needs the ``[geo]`` extra (pyogrio, rasterio).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lang_sam.errors import InvalidArgumentError
from lang_sam.geo import GeoPrediction, to_crs
from lang_sam.labeling.atomic import atomic_path
from lang_sam.raster import gdal_env, require_geo

__all__ = ["GEO_FORMATS", "LABEL_BLOCK", "write_gpkg", "write_geojson", "write_label_rasters", "geo_record",
           "class_ids_of"]

#: The map formats a raster run writes (``--format``).
GEO_FORMATS = ("gpkg", "geojson", "geotiff")
#: Block size of the label GeoTIFFs.
LABEL_BLOCK = 256


def class_ids_of(geo: GeoPrediction, classes: Sequence[str] | None = None) -> list[int]:
    """1-based class ids of ``geo``'s instances: their phrase's position in ``classes`` (default:
    the phrases in order of first appearance).

    Raises:
        InvalidArgumentError: a phrase not in ``classes``.
    """
    names = list(classes) if classes is not None else list(dict.fromkeys(geo.prediction.phrases))
    missing = [p for p in geo.prediction.phrases if p not in names]
    if missing:
        raise InvalidArgumentError(f"class {missing[0]!r} is not in the classes {names}")
    return [names.index(p) + 1 for p in geo.prediction.phrases]


def _write_vector(path: Path, geo: GeoPrediction, class_ids: Sequence[int], *, driver: str, to_4326: bool) -> Path:
    require_geo()
    import pyogrio.raw
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    recs = geo.records()
    geoms = [r["geometry"] for r in recs]
    crs = geo.crs.to_wkt() if geo.crs is not None else None
    layer_options = None
    if to_4326 and geo.crs is not None:
        geoms = to_crs(geoms, geo.crs, "EPSG:4326")
        crs, layer_options = "EPSG:4326", {"RFC7946": "YES"}
    multi = [g if isinstance(g, MultiPolygon) else MultiPolygon([g] if not g.is_empty else []) for g in geoms]
    assert all(isinstance(g, (Polygon, MultiPolygon)) for g in geoms)
    fields = ["id", "class", "class_id", "score", "iou_score", "area_m2"]
    data = [
        np.array([r["id"] for r in recs], np.int64),
        np.array([r["class"] for r in recs], object),
        np.array(list(class_ids), np.int64),
        np.array([r["score"] for r in recs], np.float64),
        np.array([r["iou_score"] for r in recs], np.float64),
        np.array([np.nan if r["area_m2"] is None else r["area_m2"] for r in recs], np.float64),
    ]
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The temporary name's suffix is not .gpkg, and a raster without CRS was warned about already.
        warnings.filterwarnings("ignore", message=".*filename extension should be", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
        pyogrio.raw.write(str(tmp), shapely.to_wkb(np.array(multi, dtype=object)), data, fields,
                          driver=driver, geometry_type="MultiPolygon", crs=crs, layer=Path(path).stem,
                          layer_options=layer_options)
    return Path(path)


def write_gpkg(path: str | Path, geo: GeoPrediction, class_ids: Sequence[int] | None = None) -> Path:
    """The instances of ``geo`` as a GeoPackage layer (named after the file) in the raster's CRS.

    Raises:
        GeoNotInstalledError: the ``[geo]`` extra is missing.
        InvalidArgumentError: ``class_ids`` not one per instance.
    """
    return _write_vector(Path(path), geo, _ids(geo, class_ids), driver="GPKG", to_4326=False)


def write_geojson(path: str | Path, geo: GeoPrediction, class_ids: Sequence[int] | None = None) -> Path:
    """The instances of ``geo`` as RFC 7946 GeoJSON (EPSG:4326; pixels without a raster CRS).

    Raises:
        GeoNotInstalledError: the ``[geo]`` extra is missing.
        RasterTransformError: the raster's CRS cannot be moved to EPSG:4326.
        InvalidArgumentError: ``class_ids`` not one per instance.
    """
    return _write_vector(Path(path), geo, _ids(geo, class_ids), driver="GeoJSON", to_4326=True)


def _ids(geo: GeoPrediction, class_ids: Sequence[int] | None) -> list[int]:
    ids = class_ids_of(geo) if class_ids is None else [int(c) for c in class_ids]
    if len(ids) != len(geo):
        raise InvalidArgumentError(f"got {len(ids)} class ids for {len(geo)} instances; expected one each")
    return ids


def write_label_rasters(instance_path: str | Path | None, class_path: str | Path | None, geo: GeoPrediction,
                        class_ids: Sequence[int] | None = None) -> list[Path]:
    """The instance-id (uint32) and class-id (uint16) GeoTIFFs of ``geo`` (either path may be
    None): the raster's size, transform and CRS (none without one), tiled, deflate; 0 background;
    the higher-scoring instance on top where two overlap.

    Raises:
        GeoNotInstalledError: the ``[geo]`` extra is missing.
        InvalidArgumentError: ``class_ids`` not one per instance.
    """
    rasterio = require_geo()
    from rasterio.windows import Window

    ids = _ids(geo, class_ids)
    p = geo.prediction
    H, W = p.image_size
    order = np.argsort(np.asarray(p.logits, np.float64), kind="stable")  # lowest first: the best on top
    written = []
    for path, values, dtype in ((instance_path, [i + 1 for i in range(len(ids))], "uint32"),
                                (class_path, ids, "uint16")):
        if path is None:
            continue
        profile = dict(driver="GTiff", width=W, height=H, count=1, dtype=dtype, crs=geo.crs,
                       transform=geo.transform if geo.crs is not None else None, tiled=True,
                       blockxsize=LABEL_BLOCK, blockysize=LABEL_BLOCK, compress="deflate", sparse_ok=True)
        with atomic_path(path) as tmp, gdal_env():
            with rasterio.open(tmp, "w+", **profile) as ds:
                for i in order:
                    m = p.masks[int(i)]
                    if not m.area:
                        continue
                    x0, y0, x1, y1 = m.bbox
                    win = Window(x0, y0, x1 - x0, y1 - y0)
                    block = ds.read(1, window=win)
                    block[m.mask] = values[int(i)]
                    ds.write(block, 1, window=win)
        written.append(Path(path))
    return written


def geo_record(geo: GeoPrediction, file_name: str, class_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """The JSON record of one raster: ``file_name``, ``width``, ``height``, ``crs`` (WKT, or None),
    ``transform`` (the 6 affine coefficients ``a, b, c, d, e, f``), ``failed_blocks`` and
    ``annotations``: per instance ``id``, ``class``, ``class_id``, ``score``, ``iou_score``,
    ``area`` (pixels), ``area_m2``, ``bbox`` (pixel ``x, y, w, h``) and ``bbox_map`` (``minx, miny,
    maxx, maxy`` in ``crs``; pixels without one)."""
    ids = _ids(geo, class_ids)
    p = geo.prediction
    H, W = p.image_size
    boxes = p.boxes.numpy().astype(np.float64)
    mboxes = geo.map_boxes()
    anns = []
    for r, cid, box, mbox, m in zip(geo.records(), ids, boxes, mboxes, p.masks):
        x0, y0, x1, y1 = (float(v) for v in box)
        anns.append({"id": r["id"], "class": r["class"], "class_id": cid, "score": round(r["score"], 6),
                     "iou_score": round(r["iou_score"], 6), "area": m.area, "area_m2": r["area_m2"],
                     "bbox": [x0, y0, x1 - x0, y1 - y0], "bbox_map": [float(v) for v in mbox]})
    t = geo.transform
    return {"file_name": file_name, "width": W, "height": H,
            "crs": geo.crs.to_wkt() if geo.crs is not None else None,
            "transform": [t.a, t.b, t.c, t.d, t.e, t.f], "failed_blocks": [list(b) for b in geo.failed],
            "annotations": anns}
