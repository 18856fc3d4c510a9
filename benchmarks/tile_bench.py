"""Benchmark sliced inference on large images: wall time and peak memory, tiled against untiled.

    python benchmarks/tile_bench.py              # full-size vit_b + Swin-T: about 18 min on 2 CPU cores
    python benchmarks/tile_bench.py --tiny       # tiny models and small images: checks the script

Three configurations, each in its own fresh process (so peak memory is measured alike):

- ``untiled``: ``LangSAM.predict`` on a 6000x4000 image (GroundingDINO sees it at 1200x800);
- ``tiled``: ``LangSAM.predict(tile=...)`` on the same image, 1024-px tiles, 20 % overlap (40 tiles);
- ``large``: ``predict(tile=...)`` on a 12000x12000 image, 2048-px tiles, 10 % overlap (49 tiles);
  the issue's target is a peak RSS under 4 GB.

Checkpoints: full-size random-weight vit_b + Swin-T (compute does not depend on weight values),
GroundingDINO written with ``few_boxes=True`` (see ``lang_sam.models.detector.random_gdino_state_dict``).
Random detectors find as many boxes as their calibration allows, so the images are built to make
that count bounded: each is a mosaic of one photo cell repeated with the period of its tile step,
so its tiles show at most four different pictures (inner tiles, last column, last row, corner).
Each configuration gets its own GroundingDINO checkpoint (the same random weights, so the same
compute; only the score offset differs), calibrated with the benchmark's prompt on the pictures
that configuration shows: the whole 6000x4000 image as GroundingDINO sees it (untiled: exactly
``--boxes``, default 4), or (tiled) the picture of the inner tiles, so that every inner tile finds
exactly ``--boxes`` and the edge tiles what their pictures give (``--calibrate all``: at most ``--boxes`` on
every picture, exactly that many on the best-scoring one, so few tiles find any). The merge then
removes the duplicates the overlaps produce.

The models run with ``cache_size=0``: the mosaic's tiles repeat pixel for pixel, and the
content-keyed encoding cache would otherwise skip all but a few of them.

Each process records: model load, image read and predict times; detections, GroundingDINO passes
and SAM image encodings (counted with forward hooks); the masks' memory (dense ``N x H x W`` bytes
or the crops' bytes); peak RSS (``VmHWM``) after loading and at the end. The table gives the
tiled / untiled ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "car. person. roof"
GB = 1e9

#: name -> (image, tile size, overlap) for the full run; None: untiled.
CONFIGS = {
    "untiled": ("6000x4000", None, None),
    "tiled": ("6000x4000", 1024, 0.2),
    "large": ("12000x12000", 2048, 0.1),
}
TINY_CONFIGS = {
    "untiled": ("600x400", None, None),
    "tiled": ("600x400", 256, 0.2),
    "large": ("1200x1200", 512, 0.1),
}


def rss_mib() -> float:
    """This process's peak resident memory, MiB: ``VmHWM`` (Linux), else ``ru_maxrss``.

    Not ``ru_maxrss`` on Linux: it carries the parent's peak over ``fork`` + ``exec``, and the
    parent here has held the images and a GroundingDINO network while calibrating."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 2**20 if sys.platform == "darwin" else 2**10  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / scale / 1024


def size_of(name: str) -> tuple[int, int]:
    w, h = name.split("x")
    return int(w), int(h)


# ------------------------------------------------------------------------------------------------
# Images and checkpoints
# ------------------------------------------------------------------------------------------------
def mosaic(width: int, height: int, period: int):
    """A ``width x height`` RGB image repeating one ``period``-px cell cut from assets/coffee.jpg."""
    import numpy as np
    from PIL import Image

    photo = Image.open(ROOT / "assets" / "coffee.jpg").convert("RGB")
    scale = period / min(photo.size)
    cell = photo.resize((max(period, round(photo.width * scale)), max(period, round(photo.height * scale))),
                        Image.BILINEAR).crop((0, 0, period, period))
    cell = np.asarray(cell)
    reps = (-(-height // period), -(-width // period), 1)
    return Image.fromarray(np.ascontiguousarray(np.tile(cell, reps)[:height, :width]))


def distinct_tiles(image, size: int, overlap: float) -> list:
    """One crop of each different picture the tiles of ``image`` show (the image repeats with the
    tile step, so a tile's picture is given by its offsets modulo the step)."""
    from lang_sam.tiling import TileSpec

    spec = TileSpec(size, overlap)
    seen, crops = set(), []
    for t in spec.grid(*image.size):
        key = (t[0] % spec.step, t[1] % spec.step, t[2] - t[0], t[3] - t[1])
        if key not in seen:
            seen.add(key)
            crops.append(image.crop(t))
    return crops


def prepare(tmp: Path, configs: dict, tiny: bool, boxes: int, weights: Path | None,
            calibrate: str = "inner") -> Path:
    """Write the images (PNG) and the checkpoints calibrated on them; return the weights folder."""
    from lang_sam.tiling import TileSpec

    images = {}
    for image_name in dict.fromkeys(i for i, _, _ in configs.values()):
        # One period per image: the step of the tiling run on it (the untiled run shares the image).
        (step,) = {TileSpec(s, o).step for i, s, o in configs.values() if i == image_name and s}
        images[image_name] = mosaic(*size_of(image_name), step)
        path = tmp / f"{image_name}.png"
        t0 = time.perf_counter()
        images[image_name].save(path, compress_level=1)
        print(f"wrote {path} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if weights is not None:
        print(f"reusing the checkpoints in {weights} (calibrated for these images?)")
        return weights
    weights = tmp / "weights"
    from lang_sam.models.registry import get_spec
    from lang_sam.testing import write_gdino_checkpoint, write_sam_checkpoint

    sam, gdino = sam_gdino(tiny)
    sam_file = write_sam_checkpoint(weights / get_spec("sam", sam).filename, sam)
    for name, (image_name, size, overlap) in configs.items():
        # Untiled: the whole image (GroundingDINO resizes it, as predict does); tiled: each picture
        # its tiles show. One checkpoint per configuration, so that each finds about as many
        # boxes per picture it sees (one calibration for all would leave the tiles, which score
        # lower than the whole image, with none).
        if size is None:
            calibration = [images[image_name]]
        elif calibrate == "inner":  # the picture of every inner tile: boxes in (nearly) every tile
            calibration = distinct_tiles(images[image_name], size, overlap)[:1]
        else:  # "all": at most --boxes on every picture (few tiles get any)
            calibration = distinct_tiles(images[image_name], size, overlap)
        folder = weights / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / sam_file.name).symlink_to(sam_file)
        t0 = time.perf_counter()
        print(f"{name}: random {sam} + {gdino} checkpoints, GroundingDINO calibrated for at most {boxes} "
              f"boxes on each of {len(calibration)} pictures ...", flush=True)
        write_gdino_checkpoint(folder / get_spec("gdino", gdino).filename, gdino, few_boxes=True,
                               target_boxes=boxes, calibration_image=calibration,
                               calibration_prompt=PROMPT)
        print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    return weights


def sam_gdino(tiny: bool) -> tuple[str, str]:
    if not tiny:
        return "vit_b", "swint"
    from lang_sam.models.registry import register_model
    from lang_sam.testing import tiny_gdino_spec, tiny_sam_spec

    for spec in (tiny_sam_spec(), tiny_gdino_spec()):
        register_model(spec, overwrite=True)
    return "tiny_sam", "tiny_gdino"


# ------------------------------------------------------------------------------------------------
# One configuration, in its own process
# ------------------------------------------------------------------------------------------------
def run_config(name: str, configs: dict, tiny: bool, weights: Path, tmp: Path, out: Path) -> None:
    import torch

    from lang_sam import LangSAM, TileSpec
    from lang_sam.utils import load_image

    image_name, size, overlap = configs[name]
    sam, gdino = sam_gdino(tiny)
    os.environ["LANG_SAM_WEIGHTS_DIR"] = str(weights / name)
    os.environ["LANG_SAM_OFFLINE"] = "1"
    res: dict = {"image": image_name, "tile": size, "overlap": overlap}
    t0 = time.perf_counter()
    # No encoding cache: the mosaic's tiles repeat pixel for pixel, and a cache would skip them.
    model = LangSAM(sam, gdino_type=gdino, device="cpu", cache_size=0)
    res["load_s"] = time.perf_counter() - t0
    runs = {"gdino": 0, "sam": 0}
    model.groundingdino.backbone.register_forward_hook(lambda *a: runs.__setitem__("gdino", runs["gdino"] + 1))
    model.sam.model.image_encoder.register_forward_hook(lambda *a: runs.__setitem__("sam", runs["sam"] + 1))
    res["rss_after_load_mib"] = rss_mib()
    t0 = time.perf_counter()
    image = load_image(tmp / f"{image_name}.png")
    res["read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if size is None:
        pred = model.predict(image, PROMPT)
        res["mask_mib"] = pred.masks.numel() / 2**20
        res["tiles"] = 1
    else:
        pred = model.predict(image, PROMPT, tile=TileSpec(size, overlap))
        res["mask_mib"] = sum(m.nbytes for m in pred.masks) / 2**20
        res["tiles"] = len(pred.tiles)
    res["predict_s"] = time.perf_counter() - t0
    res["detections"] = len(pred.phrases)
    res["gdino_passes"], res["sam_encodings"] = runs["gdino"], runs["sam"]
    res["peak_rss_mib"] = rss_mib()
    res["threads"] = torch.get_num_threads()
    out.write_text(json.dumps(res))


# ------------------------------------------------------------------------------------------------
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="sliced inference on large images: tiled vs untiled")
    p.add_argument("--tiny", action="store_true", help="tiny models and small images (a check of the script)")
    p.add_argument("--boxes", type=int, default=4, help="most boxes GroundingDINO finds on one picture")
    p.add_argument("--only", nargs="*", default=None, help="configurations to run (default: all)")
    p.add_argument("--calibrate", choices=("inner", "all"), default="inner",
                   help="tiled runs: --boxes on the inner tiles' picture (default; edge tiles get what "
                        "they get), or at most --boxes on every picture (few tiles find any)")
    p.add_argument("--weights", default=None, help="reuse a folder of checkpoints written by a run")
    p.add_argument("--report", default=None, help="re-print a finished run from its folder")
    p.add_argument("--config", default=None, help=argparse.SUPPRESS)
    p.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    configs = TINY_CONFIGS if args.tiny else CONFIGS
    if args.config:
        run_config(args.config, configs, args.tiny, Path(args.weights), Path(args.tmp), Path(args.out))
        return
    if args.report:
        report(Path(args.report), configs)
        return

    tmp = Path(tempfile.mkdtemp(prefix="lang-sam-tile-bench-"))
    print(f"outputs in {tmp} (python benchmarks/tile_bench.py{' --tiny' if args.tiny else ''} "
          f"--report {tmp} re-prints this run)", flush=True)
    weights = prepare(tmp, configs, args.tiny, args.boxes, Path(args.weights) if args.weights else None,
                      args.calibrate)
    for name in args.only or list(configs):
        image_name, size, overlap = configs[name]
        what = "untiled" if size is None else f"{size}-px tiles, {overlap:.0%} overlap"
        print(f"{name}: {image_name}, {what} ...", flush=True)
        out = tmp / f"{name}.json"
        cmd = [sys.executable, __file__, "--config", name, "--weights", str(weights), "--tmp", str(tmp),
               "--out", str(out)] + (["--tiny"] if args.tiny else [])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        print(f"  {json.loads(out.read_text())} ({time.perf_counter() - t0:.0f} s in all)", flush=True)
    report(tmp, configs)


def report(tmp: Path, configs: dict) -> None:
    res = {n: json.loads((tmp / f"{n}.json").read_text()) for n in configs if (tmp / f"{n}.json").is_file()}
    print("\n| configuration | tiles | GroundingDINO passes | SAM encodings | detections | load, s | "
          "read, s | predict, s | masks, MiB | peak RSS, MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, r in res.items():
        what = "untiled" if r["tile"] is None else f"{r['tile']} px, {r['overlap']:.0%}"
        print(f"| {n}: {r['image']}, {what} | {r['tiles']} | {r['gdino_passes']} | {r['sam_encodings']} | "
              f"{r['detections']} | {r['load_s']:.1f} | {r['read_s']:.1f} | {r['predict_s']:.1f} | "
              f"{r['mask_mib']:.1f} | {r['peak_rss_mib']:.0f} |")
    if "untiled" in res and "tiled" in res:
        u, t = res["untiled"], res["tiled"]
        print(f"\ntiled / untiled on {u['image']}: predict {t['predict_s'] / u['predict_s']:.2f}x, "
              f"peak RSS {t['peak_rss_mib'] / u['peak_rss_mib']:.2f}x, "
              f"masks {t['mask_mib'] / max(u['mask_mib'], 1e-9):.3f}x")
    if "large" in res:
        r = res["large"]
        peak = r["peak_rss_mib"] * 2**20
        print(f"{r['image']} tiled: peak RSS {peak / GB:.2f} GB "
              f"({'under' if peak < 4 * GB else 'OVER'} the 4 GB target; {r['rss_after_load_mib']:.0f} MiB "
              f"after loading the models)")


if __name__ == "__main__":
    main()
