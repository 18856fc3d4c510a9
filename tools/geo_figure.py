"""Draw docs/assets/geo_polygons.png: the GeoPackage polygons of a raster run drawn over the raster.

A synthetic north-up UTM GeoTIFF of coloured shapes (tests/geo_helpers.py) is run through
``lang-sam predict --format gpkg`` with the tests' stand-in engines (a colour detector and a
segmenter whose mask is its box: no weights needed), and the polygons read back from the
GeoPackage (map coordinates) are drawn in raster pixels (``~transform``) with their class and id.

    PYTHONPATH=. python tools/geo_figure.py [OUT.png]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main(out: Path) -> None:
    import numpy as np
    import pyogrio
    import rasterio
    from PIL import Image, ImageDraw

    import geo_helpers as gh
    from lang_sam.cli import main as cli

    objects = [("red", 30, 40, 60, 36), ("blue", 150, 30, 40, 60), ("red", 230, 120, 50, 30),
               ("blue", 70, 150, 56, 40), ("red", 300, 20, 30, 30)]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        gh.geo_model(d)
        raster = gh.write_raster(d / "ortho.tif", width=360, height=220, objects=objects)
        rc = cli(["predict", str(raster), "--prompt", "red. blue", "--format", "gpkg", "--output", str(d / "out"),
                  "--tile", "128", "--tile-overlap", "0.5", "--tile-merge", "greedy", "--sam-type", "geo_box_fill",
                  "--sam-ckpt", str(d / "geo_bf.pth"), "--gdino-type", "geo_colors", "--gdino-ckpt",
                  str(d / "geo_colors.pth"), "--device", "cpu", "-q"])
        assert rc == 0, rc
        df = pyogrio.read_dataframe(d / "out" / "gpkg" / "ortho.gpkg")
        with rasterio.open(raster) as ds:
            rgb = np.transpose(ds.read(), (1, 2, 0))
            inverse = ~ds.transform
    scale = 2
    img = Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    for _, row in df.iterrows():
        for poly in row.geometry.geoms:
            px = [tuple(v * scale for v in inverse * xy) for xy in poly.exterior.coords]
            draw.line(px, fill=(255, 230, 0), width=3)
            x0, y0 = min(p[0] for p in px), min(p[1] for p in px)
            draw.text((x0 + 4, y0 + 4), f"{row['id']} {row['class']} {row['area_m2']:.0f} m2", fill=(255, 255, 255))
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(df)} polygons)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "assets" / "geo_polygons.png")
