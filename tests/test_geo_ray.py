"""``--ray`` on one raster (issue 28 item 6): its tiles and SAM windows dealt to two Ray workers,
merged on the driver; the outputs equal the single-process run's byte for byte (the label
GeoTIFFs, the GeoPackage, the records), a corrupt block reported the same way."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

pytest.importorskip("rasterio")  # the [geo] extra
ray = pytest.importorskip("ray")  # the [ray] extra

import geo_helpers as gh  # noqa: E402
from lang_sam.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    path = os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": {"PYTHONPATH": path, "LANG_SAM_OFFLINE": "1"}})
    try:
        yield
    finally:
        ray.shutdown()


def _corrupt_block(path: Path, row: int, col: int) -> None:
    import rasterio

    with rasterio.open(path) as ds:
        off = int(ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[off:off + size] = bytes(size)
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_ray_splits_one_rasters_tiles_and_equals_one_process(ray_cluster, tmp_path):
    folder = tmp_path / "engines"
    folder.mkdir()
    gh.geo_model(folder)  # registers the stand-in types; the workers get their specs from the driver
    try:
        raster = gh.write_raster(tmp_path / "ortho.tif", width=384, height=256)
        _corrupt_block(raster, 3, 5)  # pixels x 320..384, y 192..256: no object there
        args = ["predict", str(raster), "--prompt", "red. blue", "--format", "gpkg,geojson,geotiff", "--tile", "64",
                "--tile-overlap", "0.25", "--tile-merge", "greedy", "--sam-type", "geo_box_fill", "--sam-ckpt",
                str(folder / "geo_bf.pth"), "--gdino-type", "geo_colors", "--gdino-ckpt",
                str(folder / "geo_colors.pth"), "--device", "cpu", "-q"]
        assert main([*args, "--output", str(tmp_path / "one")]) == 0
        assert main([*args, "--output", str(tmp_path / "ray"), "--ray", "--workers", "2"]) == 0
    finally:
        gh.drop_geo_model()
    one, two = tmp_path / "one", tmp_path / "ray"
    rec = json.loads((one / "json" / "ortho.json").read_text())
    assert len(rec["annotations"]) == 3 and rec["failed_blocks"] == [[320, 192, 384, 256]]
    for rel in ("json/ortho.json", "geotiff/ortho_instances.tif", "geotiff/ortho_classes.tif",
                "geojson/ortho.geojson", ".lang-sam/rasters/ortho.json"):
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
    import pyogrio

    a, b = pyogrio.read_dataframe(one / "gpkg" / "ortho.gpkg"), pyogrio.read_dataframe(two / "gpkg" / "ortho.gpkg")
    assert a.drop(columns="geometry").equals(b.drop(columns="geometry")) and a.geometry.equals(b.geometry)
