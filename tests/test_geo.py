"""Map rasters (issue 28): windowed reading, georeferenced results and outputs, map-coordinate
prompts and bad input, on synthetic GeoTIFFs the tests write (tests/geo_helpers.py) and the colour
detector + box-fill segmenter (tests/plugin_engines.py: each painted rectangle is found, its mask
is its pixels)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

rasterio = pytest.importorskip("rasterio")  # the [geo] extra; installed in CI with the test extra
import pyogrio  # noqa: E402
from affine import Affine  # noqa: E402
from shapely.geometry import box as shapely_box  # noqa: E402
import shapely  # noqa: E402

import geo_helpers as gh  # noqa: E402
from lang_sam import errors, geo  # noqa: E402
from lang_sam.labeling import geo_formats  # noqa: E402
from lang_sam.masks import CropMask  # noqa: E402
from lang_sam.raster import RasterSource, Stretch  # noqa: E402
from lang_sam.tiling import TileSpec  # noqa: E402
from plugin_engines import ColorDetector  # noqa: E402

#: The stand-in detector scores every object alike, so a tile's cut box and its neighbour's whole box
#: tie; greedy merging keeps their union, the object's whole box.
TILE = TileSpec(64, 0.25, merge="greedy")
PROMPT = "red. blue"

UTM = "EPSG:32633"
NORTH_UP = Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0)
#: id -> (crs, transform, dtype, nodata): projected and geographic, north-up, rotated, flipped, 8 and 16 bit.
RASTERS = {
    "utm north-up uint8": (UTM, NORTH_UP, "uint8", None),
    "utm uint16 nodata": (UTM, NORTH_UP, "uint16", 1),
    "lon/lat north-up": ("EPSG:4326", Affine(1e-5, 0, 15.0, 0, -1e-5, 37.0), "uint8", None),
    "utm rotated 30 deg": (UTM, Affine.translation(500000.0, 4100000.0) @ Affine.rotation(30) @ Affine.scale(0.5, -0.5),
                           "uint8", 0),
    "utm flipped (south-up)": (UTM, Affine(0.5, 0, 500000.0, 0, 0.5, 4090000.0), "uint8", None),
}


@pytest.fixture(scope="module")
def gmodel(tmp_path_factory):
    try:
        yield gh.geo_model(tmp_path_factory.mktemp("geo_engines"))
    finally:
        gh.drop_geo_model()


def painted_polygon(obj, transform):
    """The map polygon of a painted rectangle ``(colour, x, y, w, h)``."""
    _, x, y, w, h = obj
    return shapely.transform(shapely_box(x, y, x + w, y + h), lambda xy: np.stack(transform @ (xy[:, 0], xy[:, 1]), 1))


def pixel_size(transform) -> float:
    return float(np.hypot(transform.a, transform.d))


def by_class_and_place(records):
    return sorted(records, key=lambda r: (r["class"], r["geometry"].centroid.x))


@pytest.mark.parametrize("case", list(RASTERS))
def test_polygons_land_on_the_painted_objects_in_map_units(gmodel, tmp_path, case):
    crs, transform, dtype, nodata = RASTERS[case]
    path = gh.write_raster(tmp_path / "r.tif", crs=crs, transform=transform, dtype=dtype, nodata=nodata)
    out = geo.predict_raster(gmodel, path, PROMPT, tile=TILE)
    assert out.crs == rasterio.crs.CRS.from_user_input(crs) and out.transform == transform
    recs = by_class_and_place(out.records())
    want = sorted(gh.OBJECTS, key=lambda o: (o[0], (transform @ (o[1], o[2]))[0]))
    assert [r["class"] for r in recs] == sorted(o[0] for o in gh.OBJECTS)
    px = pixel_size(transform)
    for rec in recs:
        truth = min((painted_polygon(o, transform) for o in want if o[0] == rec["class"]),
                    key=lambda g: g.centroid.distance(rec["geometry"].centroid))
        assert rec["geometry"].hausdorff_distance(truth) <= px + 1e-9, case  # within one pixel, map units
        assert rec["geometry"].area == pytest.approx(truth.area, rel=1e-6)
        assert rec["score"] == pytest.approx(0.9) and rec["iou_score"] == 1.0
        if crs == UTM:
            assert rec["area_m2"] == pytest.approx(truth.area, rel=1e-6)  # metres already
        else:  # 1e-5 degrees at 37 N: about 1.11 m x 0.89 m a pixel
            _, _, _, w, h = next(o for o in want if truth.equals(painted_polygon(o, transform)))
            assert rec["area_m2"] == pytest.approx(w * h * 1.113 * 0.889, rel=0.01)
    assert sorted(r["id"] for r in recs) == [1, 2, 3]


def test_results_do_not_depend_on_the_tile_size(gmodel, tmp_path):
    """Two grids (64 px / 25 % and 128 px / 50 %): the same instances, the same polygons. Every
    object lies wholly inside a tile of both grids, the documented condition (docs/guides/geo.md):
    then the seam tolerance is 0 pixels with this segmenter."""
    path = gh.write_raster(tmp_path / "r.tif")
    a = geo.predict_raster(gmodel, path, PROMPT, tile=TILE)
    b = geo.predict_raster(gmodel, path, PROMPT, tile=TileSpec(128, 0.5, merge="greedy"))
    ra, rb = by_class_and_place(a.records()), by_class_and_place(b.records())
    assert len(ra) == len(rb) == 3
    for x, y in zip(ra, rb):
        assert x["class"] == y["class"] and x["geometry"].equals(y["geometry"])


def test_label_geotiffs_have_the_inputs_transform_and_crs(gmodel, tmp_path):
    crs, transform, _, _ = RASTERS["utm rotated 30 deg"]
    path = gh.write_raster(tmp_path / "r.tif", crs=crs, transform=transform)
    out = geo.predict_raster(gmodel, path, PROMPT, tile=TILE)
    inst, cls = geo_formats.write_label_rasters(tmp_path / "inst.tif", tmp_path / "cls.tif", out)
    with rasterio.open(path) as src, rasterio.open(inst) as a, rasterio.open(cls) as c:
        for ds in (a, c):
            assert ds.transform == src.transform and ds.crs == src.crs and ds.shape == src.shape
            assert ds.block_shapes == [(geo_formats.LABEL_BLOCK,) * 2] and ds.profile["compress"] == "deflate"
        ids, classes = a.read(1), c.read(1)
    painted = np.zeros(ids.shape, np.int32)
    for k, (name, x, y, w, h) in enumerate(gh.OBJECTS):
        painted[y:y + h, x:x + w] = k + 1
    assert ((ids > 0) == (painted > 0)).all()
    for k, (name, *_) in enumerate(gh.OBJECTS):
        inside = painted == k + 1
        assert len(np.unique(ids[inside])) == 1  # one instance per object
        assert (classes[inside] == geo_formats.class_ids_of(out)[ids[inside][0] - 1]).all()
    assert not list(tmp_path.glob(".*.tmp"))


def test_gpkg_and_geojson_read_back_with_crs_and_attributes(gmodel, tmp_path):
    crs, transform, _, _ = RASTERS["utm north-up uint8"]
    path = gh.write_raster(tmp_path / "r.tif", crs=crs, transform=transform)
    out = geo.predict_raster(gmodel, path, PROMPT, tile=TILE)
    gpkg = geo_formats.write_gpkg(tmp_path / "r.gpkg", out)
    gj = geo_formats.write_geojson(tmp_path / "r.geojson", out)
    a = pyogrio.read_dataframe(gpkg)
    b = pyogrio.read_dataframe(gj)
    assert a.crs.to_epsg() == 32633 and b.crs.to_epsg() == 4326
    for df in (a, b):
        assert {"id", "class", "class_id", "score", "iou_score", "area_m2"} <= set(df.columns)
        assert sorted(df["class"]) == ["blue", "red", "red"] and sorted(df["id"]) == [1, 2, 3]
        assert (df.geometry.geom_type == "MultiPolygon").all()
    assert a.sort_values("id")["area_m2"].tolist() == pytest.approx([r["area_m2"] for r in out.records()])
    back = b.to_crs(32633).sort_values("id")
    for g, rec in zip(back.geometry, out.records()):
        assert g.hausdorff_distance(rec["geometry"]) < 0.02  # 7 decimals of a degree: about a centimetre
    doc = json.loads(gj.read_text())
    assert -180 <= doc["features"][0]["geometry"]["coordinates"][0][0][0][0] <= 180


def test_geo_record_has_map_boxes_beside_pixel_boxes(gmodel, tmp_path):
    path = gh.write_raster(tmp_path / "r.tif")
    out = geo.predict_raster(gmodel, path, PROMPT, tile=TILE)
    rec = geo_formats.geo_record(out, "r.tif")
    json.dumps(rec)
    for ann in rec["annotations"]:
        x, y, w, h = ann["bbox"]
        mx0, my0, mx1, my1 = ann["bbox_map"]
        assert (mx0, my1) == pytest.approx(NORTH_UP @ (x, y)) and (mx1, my0) == pytest.approx(NORTH_UP @ (x + w, y + h))
    assert rec["transform"] == list(NORTH_UP)[:6] and "32633" in rec["crs"]


def test_polygons_keep_holes():
    ring = np.ones((10, 12), bool)
    ring[3:7, 4:8] = False
    poly = geo.crop_polygon(CropMask(ring, 5, 2, (40, 40)), NORTH_UP)
    assert poly.geom_type == "Polygon" and len(poly.interiors) == 1
    assert poly.area == pytest.approx((120 - 16) * 0.25)
    two = np.zeros((6, 10), bool)
    two[:, :3] = two[:, 6:] = True
    assert geo.crop_polygon(CropMask(two, 0, 0, (6, 10)), NORTH_UP).geom_type == "MultiPolygon"


def test_polygons_are_simplified_only_on_request():
    from lang_sam.results import TiledPrediction

    yy, xx = np.mgrid[:41, :41]
    disk = CropMask((yy - 20) ** 2 + (xx - 20) ** 2 <= 400, 0, 0, (41, 41))
    tp = TiledPrediction([disk], torch.tensor([[0.0, 0.0, 41.0, 41.0]]), ["red"], torch.ones(1), image_size=(41, 41))
    exact = geo.GeoPrediction(tp, NORTH_UP, rasterio.crs.CRS.from_epsg(32633))
    simple = geo.GeoPrediction(tp, NORTH_UP, exact.crs, simplify=1.0)  # 1 m = 2 pixels
    (e,), (s,) = exact.polygons(), simple.polygons()
    assert e.area == disk.area * 0.25  # pixel-exact: a staircase
    assert len(s.exterior.coords) < len(e.exterior.coords) / 3 and s.hausdorff_distance(e) <= 1.0
    assert simple.records()[0]["geometry"].equals(s)


# ------------------------------------------------------------------------------------------
# Reading: bands, stretch, nodata
# ------------------------------------------------------------------------------------------

def test_sixteen_bit_stretch_is_computed_once_and_maps_back(tmp_path):
    path = gh.write_raster(tmp_path / "r.tif", dtype="uint16")
    with RasterSource(path) as src:
        assert src.stretch.low == (0.0,) * 3 and src.stretch.high == (65535.0,) * 3
        rgb, valid = src.read((0, 0, 256, 160))
    assert valid.all()
    assert (rgb[40:160] == gh.paint(256, 160).transpose(1, 2, 0)[40:160]).all()
    s = Stretch((100.0,), (355.0,))
    assert s.apply(np.array([[[50, 100, 150, 355, 900]]])).tolist() == [[[0, 0, 50, 255, 255]]]
    assert s.apply(np.array([[[np.nan, 150.0, np.inf]]], np.float32)).tolist() == [[[0, 50, 255]]]


@pytest.mark.parametrize("bands,colorinterp,count,want", [
    (None, True, 3, (1, 2, 3)),
    (None, False, 4, (1, 2, 3)),
    ((3, 2, 1), True, 3, (3, 2, 1)),
    ((2,), True, 3, (2, 2, 2)),
    (None, False, 1, (1, 1, 1)),
])
def test_band_choice(tmp_path, bands, colorinterp, count, want):
    path = gh.write_raster(tmp_path / "r.tif", colorinterp=colorinterp, bands=max(count, 3))
    if count == 1:
        with rasterio.open(path) as ds:
            one = ds.read(1)
            profile = ds.profile
        profile.update(count=1)
        with rasterio.open(tmp_path / "one.tif", "w", **profile) as ds:
            ds.write(one, 1)
        path = tmp_path / "one.tif"
    with RasterSource(path, bands) as src:
        assert src.bands == want


def test_all_nodata_tiles_are_skipped(gmodel, tmp_path):
    # The right half is nodata: the tiles wholly inside it are not detected on.
    path = gh.write_raster(tmp_path / "r.tif", nodata=0, nodata_box=(128, 0, 256, 160), objects=gh.OBJECTS[:1])
    ColorDetector.detections = 0
    out = geo.predict_raster(gmodel, path, PROMPT, tile=TILE)
    grid = TILE.grid(256, 160)
    skipped = [t for t in grid if t[0] >= 128]
    assert skipped and ColorDetector.detections == len(grid) - len(skipped)
    assert [r["class"] for r in out.records()] == ["red"]


def test_a_corrupt_block_is_reported_and_the_rest_finished(gmodel, tmp_path):
    path = gh.write_raster(tmp_path / "r.tif")
    with rasterio.open(path) as ds:  # block (row 1, col 3): pixels x 192..256, y 64..128, no object
        off = int(ds.get_tag_item("BLOCK_OFFSET_3_1", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_3_1", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[off:off + size] = bytes(size)
    path.write_bytes(bytes(data))
    out = geo.predict_raster(gmodel, path, PROMPT, tile=TILE)
    assert out.failed == [(192, 64, 256, 128)]
    assert sorted(r["class"] for r in out.records()) == ["blue", "red", "red"]


# ------------------------------------------------------------------------------------------
# Prompts in map coordinates
# ------------------------------------------------------------------------------------------

def _lonlat_box(obj, transform, crs=UTM):
    from pyproj import Transformer

    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    poly = shapely.transform(painted_polygon(obj, transform), lambda xy: np.stack(tr.transform(xy[:, 0], xy[:, 1]), 1))
    return poly.bounds


def test_a_box_in_lon_lat_selects_the_right_pixels(gmodel, tmp_path):
    path = gh.write_raster(tmp_path / "r.tif")
    blue = gh.OBJECTS[1]
    out = geo.segment_raster(gmodel, path, boxes=[_lonlat_box(blue, NORTH_UP)], crs="EPSG:4326", tile=TILE)
    (m,) = out.prediction.masks
    _, x, y, w, h = blue
    x0, y0, x1, y1 = m.bbox
    assert abs(x0 - x) <= 1 and abs(y0 - y) <= 1 and abs(x1 - (x + w)) <= 1 and abs(y1 - (y + h)) <= 1


def test_prompts_from_a_vector_file(gmodel, tmp_path):
    import geopandas

    path = gh.write_raster(tmp_path / "r.tif")
    red = gh.OBJECTS[0]
    vec = tmp_path / "prompts.gpkg"
    geopandas.GeoDataFrame({"n": [1]}, geometry=[painted_polygon(red, NORTH_UP)], crs=UTM).to_file(vec)
    out = geo.segment_raster(gmodel, path, vector=vec, tile=TILE)
    _, x, y, w, h = red
    assert out.prediction.masks[0].bbox == (x, y, x + w, y + h)
    assert out.to_geodataframe().crs.to_epsg() == 32633


def test_a_point_prompt_on_the_tiny_sam(model, tmp_path):
    """Points go to SAM on a window around them (the tiny random SAM: a mask on that window)."""
    path = gh.write_raster(tmp_path / "r.tif")
    lon, lat = _lonlat_box(gh.OBJECTS[1], NORTH_UP)[:2]
    out = geo.segment_raster(model, path, points=[[lon + 1e-6, lat + 1e-6]], tile=TILE)
    assert len(out) == 1 and out.prediction.masks[0].image_size == (160, 256)


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(boxes=[[0.0, 0.0, 0.1, 0.1]]), errors.PromptOutsideRasterError, "outside the 256x160 raster"),
    (dict(points=[[0.0, 0.0]]), errors.PromptOutsideRasterError, "outside the 256x160 raster"),
    (dict(boxes=[[0.0, 0.0, 1.0, 1.0]], crs="EPSG:999999"), errors.RasterTransformError, "EPSG:999999"),
    (dict(), errors.InvalidArgumentError, "no prompt"),
])
def test_bad_map_prompts(gmodel, tmp_path, kwargs, error, words):
    path = gh.write_raster(tmp_path / "r.tif")
    with pytest.raises(error, match=words) as info:
        geo.segment_raster(gmodel, path, **kwargs)
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------

def test_unknown_band_and_unreadable_file(tmp_path):
    path = gh.write_raster(tmp_path / "r.tif")
    with pytest.raises(errors.UnknownBandError, match="bands 1..3; band 4 does not exist") as info:
        RasterSource(path, (4, 3, 2))
    assert info.value.count == 3 and isinstance(info.value, ValueError)
    with pytest.raises(errors.UnknownBandError, match="1 or 3 band numbers"):
        RasterSource(path, (1, 2))
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a raster")
    with pytest.raises(errors.InvalidRasterError, match="cannot open"):
        RasterSource(bad)


def test_no_crs_gives_pixel_outputs_and_a_warning(gmodel, tmp_path):
    path = gh.write_raster(tmp_path / "r.tif", crs=None, transform=Affine.identity())
    with pytest.warns(errors.NoCRSWarning, match="no coordinate reference system"):
        out = geo.predict_raster(gmodel, path, PROMPT, tile=TILE)
    assert out.crs is None
    red = min((r for r in out.records() if r["class"] == "red"), key=lambda r: r["geometry"].bounds[0])
    assert red["geometry"].bounds == (40.0, 30.0, 64.0, 46.0) and red["area_m2"] is None
    gpkg = geo_formats.write_gpkg(tmp_path / "r.gpkg", out)
    assert pyogrio.read_info(gpkg)["crs"] is None
    assert pyogrio.read_dataframe(gpkg).total_bounds.tolist() == [40.0, 20.0, 212.0, 120.0]  # pixels


def test_a_crs_that_cannot_reach_lon_lat_is_a_typed_error_and_nothing_is_written(gmodel, tmp_path):
    # A polar stereographic CRS: points on the far side of the pole from its centre do not invert.
    path = gh.write_raster(tmp_path / "r.tif", crs="+proj=ortho +lat_0=90 +lon_0=0",
                           transform=Affine(1e5, 0, 9e6, 0, -1e5, 9e6))
    out = geo.predict_raster(gmodel, path, PROMPT, tile=TILE)
    with pytest.raises(errors.RasterTransformError) as info:
        geo_formats.write_geojson(tmp_path / "r.geojson", out)
    assert isinstance(info.value, ValueError)
    assert not list(tmp_path.glob("*.geojson")) and not list(tmp_path.glob(".*tmp*"))


def test_supervision_and_geodataframe(gmodel, tmp_path):
    sv = pytest.importorskip("supervision")
    path = gh.write_raster(tmp_path / "r.tif")
    out = geo.predict_raster(gmodel, path, PROMPT, tile=TILE)
    det = out.to_supervision()
    assert isinstance(det, sv.Detections) and len(det) == 3
    df = out.to_geodataframe()
    assert df.crs.to_epsg() == 32633 and list(df["id"]) == [1, 2, 3]
    assert torch.equal(torch.as_tensor(det.xyxy, dtype=torch.float32), out.prediction.boxes)



# ------------------------------------------------------------------------------------------
# The folder run
# ------------------------------------------------------------------------------------------

def test_a_folder_of_rasters_runs_resumes_and_reports_a_bad_one(gmodel, tmp_path):
    from lang_sam.labeling.raster_run import RasterSettings, label_rasters

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    gh.write_raster(src / "a.tif")
    gh.write_raster(src / "sub" / "b.tif", crs="EPSG:4326", transform=Affine(1e-5, 0, 15.0, 0, -1e-5, 37.0))
    (src / "broken.tif").write_bytes(b"not a raster")
    settings = RasterSettings("red. blue", tile=TILE)
    out = tmp_path / "out"
    s = label_rasters(gmodel, [src], out, settings)
    assert (s.rasters, s.labelled, s.instances) == (3, 2, 6)
    assert [(i.rel.as_posix(), "InvalidRasterError" in why) for i, why in s.failed] == [("broken.tif", True)]
    for key in ("a", "sub/b"):
        for rel in (f"gpkg/{key}.gpkg", f"geojson/{key}.geojson", f"geotiff/{key}_instances.tif",
                    f"geotiff/{key}_classes.tif", f"json/{key}.json"):
            assert (out / rel).is_file(), rel
    rec = json.loads((out / "json" / "a.json").read_text())
    assert sorted(a["class_id"] for a in rec["annotations"]) == [1, 1, 2]  # red 1, blue 2: the prompt's order
    with rasterio.open(out / "geotiff" / "sub" / "b_classes.tif") as ds:
        assert ds.crs.to_epsg() == 4326 and sorted(np.unique(ds.read(1)).tolist()) == [0, 1, 2]
    (src / "broken.tif").unlink()
    again = label_rasters(gmodel, [src], out, settings, resume=True)
    assert (again.skipped, again.labelled, again.failed) == (2, 0, [])
    with pytest.raises(errors.InvalidRunError):
        label_rasters(gmodel, [src], out, RasterSettings("red", tile=TILE), resume=True)


@pytest.mark.parametrize("extra,words", [
    (["--format", "gpkg,coco"], "a raster run writes gpkg,geojson,geotiff; got gpkg,coco"),
    (["--format", "gpkg", "--classes", "car=car"], "needs --prompt"),
    (["--bands", "3,x", "--format", "gpkg"], "expected band numbers"),
])
def test_cli_raster_usage_errors(tmp_path, capsys, extra, words):
    from lang_sam.cli import main

    path = gh.write_raster(tmp_path / "r.tif")
    prompt = [] if "--classes" in extra else ["--prompt", "red"]
    assert main(["predict", str(path), *prompt, "--output", str(tmp_path / "out"), *extra]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before the output folder is made
