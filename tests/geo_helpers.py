"""Synthetic rasters for the map-imagery tests (tests/test_geo.py): solid rectangles of the colour
detector's colours (tests/plugin_engines.py) painted on a grey background, written with rasterio in
any CRS, transform, data type and nodata, and the colour detector + box-fill segmenter as a model
(each painted rectangle is found and segmented exactly: its mask is its pixels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from plugin_engines import COLORS

#: (colour, x0, y0, w, h) in pixels: the rectangles a raster is painted with.
OBJECTS = [("red", 40, 30, 24, 16), ("blue", 150, 100, 30, 20), ("red", 200, 20, 12, 40)]


def paint(width: int, height: int, objects=OBJECTS, background=(90, 90, 90)) -> np.ndarray:
    """``(3, H, W)`` uint8 bands."""
    img = np.empty((3, height, width), np.uint8)
    img[:] = np.asarray(background, np.uint8)[:, None, None]
    for name, x, y, w, h in objects:
        img[:, y:y + h, x:x + w] = np.asarray(COLORS[name], np.uint8)[:, None, None]
    return img


def write_raster(path: Path, width: int = 256, height: int = 160, *, crs="EPSG:32633", transform=None,
                 dtype: str = "uint8", nodata=None, nodata_box=None, objects=OBJECTS, blocksize: int = 64,
                 compress: str | None = "deflate", colorinterp: bool = True, bands: int = 3) -> Path:
    """A tiled GeoTIFF of ``paint``'s picture. ``uint16``: values ``v * 257`` (0..65535) plus two
    5 % strips of 0 and 65535 at the top, so the 2-98 % stretch maps them back to ``v``.
    ``nodata_box``: ``(x0, y0, x1, y1)`` pixels set to ``nodata``. ``bands`` > 3: extra bands of 0."""
    import rasterio
    from rasterio.enums import ColorInterp
    from affine import Affine

    img = paint(width, height, objects).astype(dtype)
    if dtype == "uint16":
        img = img.astype(np.uint16) * 257
        strip = max(1, int(0.05 * height) + 1)
        img[:, :strip, : width // 2] = 0
        img[:, :strip, width // 2:] = 65535
    if bands > 3:
        img = np.concatenate([img, np.zeros((bands - 3, height, width), img.dtype)])
    if nodata_box is not None:
        x0, y0, x1, y1 = nodata_box
        img[:, y0:y1, x0:x1] = nodata
    transform = transform if transform is not None else Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0)
    profile = dict(driver="GTiff", width=width, height=height, count=len(img), dtype=dtype, crs=crs,
                   transform=transform, nodata=nodata, tiled=True, blockxsize=blocksize, blockysize=blocksize)
    if compress:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(img)
        if colorinterp and len(img) == 3:
            ds.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    return path


def geo_model(folder: Path):
    """A LangSAM of the colour detector and the box-fill segmenter (registered; unregister with
    :func:`drop_geo_model`)."""
    from lang_sam import LangSAM
    from lang_sam.hub import ModelSpec
    from lang_sam.models.registry import register_model
    from plugin_engines import BoxFillArch

    sam = register_model(ModelSpec("sam", "geo_box_fill", "geo_bf.pth", BoxFillArch(),
                                   engine="plugin_engines:BoxFill"), overwrite=True)
    det = register_model(ModelSpec("gdino", "geo_colors", "geo_colors.pth", None,
                                   engine="plugin_engines:ColorDetector"), overwrite=True)
    torch.save({"inset": torch.tensor(0)}, folder / "geo_bf.pth")
    torch.save({}, folder / "geo_colors.pth")
    return LangSAM(sam.name, str(folder / "geo_bf.pth"), gdino_type=det.name,
                   gdino_ckpt_path=str(folder / "geo_colors.pth"), device="cpu")


def drop_geo_model() -> None:
    from lang_sam.models.registry import unregister_model

    unregister_model("sam", "geo_box_fill")
    unregister_model("gdino", "geo_colors")
