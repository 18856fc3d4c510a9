"""Map rasters: peak memory and time per tile on a 40000 x 40000 GeoTIFF, one process and ``--ray``
with 2 workers (issue 28).

The raster is written **sparsely** (a tiled GeoTIFF with ``SPARSE_OK``: only the blocks holding
objects are stored, the rest read back as nodata), so it costs a few MiB of disk. Objects are solid
squares of the tests' colours on grey patches. The engines are the tests' stand-ins
(tests/plugin_engines.py: a colour detector and a segmenter whose mask is its box, no weights), so
what is measured is lang-sam's own work: window reads, the stretch, nodata skipping, the tile
merge, crops, polygons and the writers. Model compute adds per tile what the model costs on one
1024-px window, whatever the raster's size.

Each mode runs ``lang-sam predict RASTER --format gpkg,geotiff`` (``lang_sam.cli.main`` after
registering the stand-ins) in a fresh process tree; its peak
RSS is sampled (every 0.1 s) over that process and all its children (Ray's workers and daemons
included). The reference, measured in the same run, is the same command on a 4000 x 4000 raster
with the same objects per area: memory bounded by the models plus a few windows shows as a ratio
near 1 while the raster is 100x larger.

    PYTHONPATH=. python benchmarks/bench_geo.py [--size 40000] [--workers 2] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TILE, OVERLAP = 1024, 0.2
BLOCK = 512


def write_sparse(path: Path, size: int, every: int = 4096) -> int:
    """A ``size`` x ``size`` 3-band uint8 UTM GeoTIFF, nodata 0, with a grey 512-px block holding a
    red 40-px and a blue 24-px square every ``every`` pixels; the other blocks are never written.
    Returns the number of blocks written."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    from plugin_engines import COLORS

    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32633",
                   transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4100000.0), nodata=0, tiled=True,
                   blockxsize=BLOCK, blockysize=BLOCK, compress="deflate", sparse_ok=True)
    patch = np.full((3, BLOCK, BLOCK), 90, np.uint8)
    patch[:, 100:140, 100:140] = np.asarray(COLORS["red"], np.uint8)[:, None, None]
    patch[:, 300:324, 260:284] = np.asarray(COLORS["blue"], np.uint8)[:, None, None]
    n = 0
    with rasterio.open(path, "w", **profile) as ds:
        for y in range(2 * BLOCK, size - BLOCK + 1, every):
            for x in range(2 * BLOCK, size - BLOCK + 1, every):
                ds.write(patch, window=Window(x, y, BLOCK, BLOCK))
                n += 1
    return n


def run(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """``(seconds, peak RSS MiB of the process tree, output)``."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{out}")
    return time.perf_counter() - start, peak / 2**20, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=40000)
    ap.add_argument("--reference", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()

    import geo_helpers as gh
    from lang_sam.tiling import TileSpec

    with tempfile.TemporaryDirectory(prefix="bench_geo_") as tmp:
        d = Path(tmp)
        gh.geo_model(d)
        # The command registers the stand-ins, then runs lang-sam's CLI (Ray workers get the entries
        # from the driver and import the engines from tests/ on PYTHONPATH).
        runner = ("import sys; from pathlib import Path; import geo_helpers as gh; gh.geo_model(Path(sys.argv[1]));"
                  " from lang_sam.cli import main; sys.exit(main(sys.argv[2:]))")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                                             os.environ.get("PYTHONPATH", "")]),
               "LANG_SAM_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        rows = []
        for size in (args.reference, args.size):
            raster = d / f"ortho_{size}.tif"
            t0 = time.perf_counter()
            blocks = write_sparse(raster, size)
            wrote = time.perf_counter() - t0
            tiles = len(TileSpec(TILE, OVERLAP).grid(size, size))
            base = [sys.executable, "-c", runner, str(d), "predict", str(raster), "--prompt", "red. blue",
                    "--format", "gpkg,geotiff", "--tile", str(TILE), "--tile-overlap", str(OVERLAP),
                    "--sam-type", "geo_box_fill", "--sam-ckpt", str(d / "geo_bf.pth"), "--gdino-type", "geo_colors",
                    "--gdino-ckpt", str(d / "geo_colors.pth"), "--device", "cpu", "-q"]
            modes = [("one process", [])]
            if not args.no_ray:
                modes.append((f"--ray {args.workers} workers", ["--ray", "--workers", str(args.workers)]))
            for name, extra in modes:
                out_dir = d / f"out_{size}_{len(extra)}"
                secs, rss, log = run([*base, "--output", str(out_dir), *extra], env)
                summary = next((ln for ln in log.splitlines() if "instance(s)" in ln), "").strip()
                # The run's own time (the summary's "; N s"): without interpreter start and model load.
                work = float(summary.rsplit(";", 1)[1].split()[0]) if ";" in summary else secs
                rows.append((size, name, tiles, secs, work, rss))
                print(f"{size}x{size} ({raster.stat().st_size / 2**20:.1f} MiB on disk, {blocks} blocks written "
                      f"in {wrote:.1f} s), {name}: {secs:.1f} s in all, {work:.1f} s of run, "
                      f"{1000 * work / tiles:.1f} ms/tile over {tiles} tiles, peak RSS {rss:.0f} MiB; {summary}",
                      flush=True)
        print("\n| raster | mode | tiles | command s | run s | ms / tile | peak RSS MiB | RSS vs reference "
              "| run time vs one process |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        ref = {name: rss for size, name, _, _, _, rss in rows if size == args.reference}
        one = {size: work for size, name, _, _, work, _ in rows if name == "one process"}
        for size, name, tiles, secs, work, rss in rows:
            print(f"| {size} x {size} | {name} | {tiles} | {secs:.1f} | {work:.1f} | {1000 * work / tiles:.1f} | "
                  f"{rss:.0f} | {rss / ref[name]:.2f}x | {work / one[size]:.2f}x |")


if __name__ == "__main__":
    main()
