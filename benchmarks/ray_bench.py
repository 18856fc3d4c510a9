"""``lang-sam predict`` in one process against ``--ray``, on the same folder, in one run.

    python benchmarks/ray_bench.py                       # vit_b + Swin-T, 8 images, CPU
    python benchmarks/ray_bench.py --gpus-per-worker 1   # on a GPU machine (adds --device cuda)
    python benchmarks/ray_bench.py --tiny --images 2     # a quick end-to-end check (tiny models)

Full-size random-weight checkpoints of the real architectures are written to a temp folder first
(compute does not depend on weight values; GroundingDINO's is written with ``few_boxes=True``,
calibrated on the first image, as in ``bench.py``). The images are the three photos in
``assets/``, each also mirrored, plus two crops: 8 by default. Each configuration then runs the
real command in its own fresh process on the same images and checkpoints:

- ``single``: ``lang-sam predict`` (one process, torch's default threads);
- ``ray-1``: ``--ray --workers 1`` (one actor with every CPU, so the same threads as ``single``);
- ``ray-2``: ``--ray --workers 2 --cpus-per-worker 1`` (two actors, one thread each).

It prints each configuration's wall time (process start to exit: imports, Ray start, model
loading and labelling, what a user waits for), the time the command reports in its summary, and
the ratio to ``single``; then whether the outputs agree (detections and masks; scores agree to
1e-4 across thread counts, see the README), and how long the driver's writing of one image's
files takes (``LabelRun.write``, the part a Ray run cannot spread over workers).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "cup. cat. person. spoon"
FORMATS = "overlay,coco"


def make_images(folder: Path, n: int) -> list[Path]:
    """``n`` photos from assets/: the originals, mirrored copies, then centre crops."""
    from PIL import Image, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    sources = [Image.open(ROOT / "assets" / f"{name}.jpg").convert("RGB")
               for name in ("coffee", "cat", "astronaut")]
    variants = []
    for img in sources:
        variants.append(img)
    for img in sources:
        variants.append(ImageOps.mirror(img))
    for img in sources:
        w, h = img.size
        variants.append(img.crop((w // 8, h // 8, w - w // 8, h - h // 8)))
    out = []
    for i in range(n):
        path = folder / f"img{i:02d}.png"
        variants[i % len(variants)].save(path)
        out.append(path)
    return out


def register_tiny() -> None:
    from lang_sam.models.registry import register_model
    from lang_sam.testing import tiny_gdino_spec, tiny_sam_spec

    register_model(tiny_sam_spec())
    register_model(tiny_gdino_spec())


def run_cli(argv: list[str]) -> int:
    """``ray_bench.py _cli [--tiny] -- predict ...``: the command, with the tiny types if asked."""
    split = argv.index("--")
    if "--tiny" in argv[:split]:
        register_tiny()
    from lang_sam.cli import main

    return main(argv[split + 1:])


def write_checkpoints(weights: Path, sam: str, gdino: str, tiny: bool, calibration: Path) -> tuple[str, str]:
    from lang_sam.models.registry import get_spec
    from lang_sam.testing import write_gdino_checkpoint, write_sam_checkpoint

    if tiny:
        register_tiny()
        sam, gdino = "tiny_sam", "tiny_gdino"
        write_sam_checkpoint(weights / get_spec("sam", sam).filename, sam)
        write_gdino_checkpoint(weights / get_spec("gdino", gdino).filename, gdino)
    else:
        write_sam_checkpoint(weights / get_spec("sam", sam).filename, sam)
        write_gdino_checkpoint(weights / get_spec("gdino", gdino).filename, gdino, few_boxes=True,
                               target_boxes=8, calibration_image=str(calibration))
    return sam, gdino


def configurations(gpus: float | None) -> list[tuple[str, list[str]]]:
    if gpus:  # a GPU machine: one worker per GPU share against one process on one GPU
        return [("single", ["--device", "cuda"]),
                ("ray-1", ["--ray", "--workers", "1", "--gpus-per-worker", f"{gpus:g}"]),
                ("ray-all", ["--ray", "--gpus-per-worker", f"{gpus:g}"])]
    return [("single", []),
            ("ray-1", ["--ray", "--workers", "1"]),
            ("ray-2", ["--ray", "--workers", "2", "--cpus-per-worker", "1"])]


def run_config(name: str, extra: list[str], imgs: Path, out: Path, model: list[str], tiny: bool,
               env: dict, logs: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_cli", *(["--tiny"] if tiny else []), "--",
           "predict", str(imgs), "--prompt", PROMPT, "--output", str(out), "--format", FORMATS, "-q",
           *model, *extra]
    log = logs / f"{name}.log"
    started = time.perf_counter()
    with open(log, "w") as sink:
        rc = subprocess.run(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    text = log.read_text(errors="replace")
    m = re.search(r"(\d+) detection\(s\); ([\d.]+) s, ([\d.]+) images/s", text)
    if rc != 0 or m is None:
        raise SystemExit(f"{name} failed (exit {rc}); its log: {log}\n{text[-3000:]}")
    return {"name": name, "wall": wall, "reported": float(m.group(2)), "detections": int(m.group(1))}


def compare(outputs: dict[str, Path]) -> str:
    """Do the COCO files agree: same images, boxes, classes and masks; scores to 1e-4?"""
    loaded = {k: json.loads((p / "coco" / "annotations.json").read_text()) for k, p in outputs.items()}
    base_name, base = next(iter(loaded.items()))
    lines = []
    for name, coco in loaded.items():
        if name == base_name:
            continue
        if coco == base:
            lines.append(f"{name}: identical to {base_name}")
            continue
        a, b = base["annotations"], coco["annotations"]
        same = (base["images"] == coco["images"] and base["categories"] == coco["categories"]
                and len(a) == len(b)
                and all(x["segmentation"] == y["segmentation"] and x["category_id"] == y["category_id"]
                        and x["image_id"] == y["image_id"] for x, y in zip(a, b)))
        diff = max((abs(x["score"] - y["score"]) for x, y in zip(a, b)), default=0.0)
        box = max((abs(u - v) for x, y in zip(a, b) for u, v in zip(x["bbox"], y["bbox"])), default=0.0)
        lines.append(f"{name}: {'same detections and masks' if same else 'DIFFERENT detections'} as "
                     f"{base_name}; max |score diff| {diff:.1e}, max |bbox diff| {box:.1e} px")
    return "\n".join(lines)


def driver_write_ms(out: Path, formats: list[str]) -> float:
    """Mean ms per image of LabelRun.write (the driver's share), replayed from ``out``'s results."""
    import numpy as np

    from lang_sam.labeling import LabelRun, LabelSettings, rle_to_mask
    from lang_sam.labeling.run import ImageItem, ImageLabels
    from pathlib import PurePosixPath

    coco = json.loads((out / "coco" / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    labels = []
    for im in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        h, w = im["height"], im["width"]
        masks = np.stack([rle_to_mask(a["segmentation"]) for a in anns]).astype(bool) if anns else \
            np.zeros((0, h, w), bool)
        boxes = np.array([[x, y, x + bw, y + bh] for x, y, bw, bh in (a["bbox"] for a in anns)],
                         np.float32).reshape(-1, 4)
        item = ImageItem(Path(out.parent / "imgs" / im["file_name"]), PurePosixPath(im["file_name"]))
        overlay = (out / "overlays" / Path(im["file_name"]).with_suffix(".png")).read_bytes()
        labels.append(ImageLabels(item=item, width=w, height=h, boxes=boxes,
                                  scores=np.array([a["score"] for a in anns], np.float32),
                                  names=[names[a["category_id"]] for a in anns], masks=masks,
                                  overlay_png=overlay))
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in ("warm-up: imports of cv2, pycocotools", "timed"):
            run = LabelRun(Path(tmp) / attempt.split(":")[0], LabelSettings.create(PROMPT), formats)
            run.start([lab.item for lab in labels])
            started = time.perf_counter()
            for lab in labels:
                run.write(lab)
        return (time.perf_counter() - started) * 1000 / max(1, len(labels))


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_cli":
        sys.exit(run_cli(argv[1:]))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sam", default="vit_b")
    p.add_argument("--gdino", default="swint")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--tiny", action="store_true", help="tiny random models (a quick check of the script)")
    p.add_argument("--gpus-per-worker", type=float, default=None,
                   help="on a GPU machine: compare on GPUs (single: --device cuda)")
    p.add_argument("--keep", default=None, help="keep the images, weights and outputs in this folder")
    args = p.parse_args(argv)

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lang-sam-ray-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    imgs = make_images(tmp / "imgs", args.images)
    weights = tmp / "weights"
    sam, gdino = write_checkpoints(weights, args.sam, args.gdino, args.tiny, imgs[0])
    model = ["--sam-type", sam, "--gdino-type", gdino]
    env = {**os.environ, "LANG_SAM_WEIGHTS_DIR": str(weights), "LANG_SAM_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)

    import torch

    print(f"{args.images} images, SAM {sam} + GroundingDINO {gdino}, formats {FORMATS}, prompt {PROMPT!r}; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    results, outputs = [], {}
    for name, extra in configurations(args.gpus_per_worker):
        outputs[name] = tmp / f"out-{name}"
        results.append(run_config(name, extra, imgs[0].parent, outputs[name], model, args.tiny, env, logs))
        r = results[-1]
        print(f"  {name}: {r['wall']:.1f} s", flush=True)
    base = results[0]
    print()
    print("| configuration | wall, s | reported, s | wall / single | detections |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['name']} | {r['wall']:.1f} | {r['reported']:.1f} | {r['wall'] / base['wall']:.2f}x "
              f"| {r['detections']} |")
    print()
    print(compare(outputs))
    ms = driver_write_ms(outputs[base["name"]], FORMATS.split(","))
    ms_all = None
    if "masks" not in FORMATS:
        ms_all = driver_write_ms(outputs[base["name"]], ["overlay", "coco", "masks", "labelme", "yolo"])
    print(f"driver writing per image (LabelRun.write): {ms:.1f} ms for {FORMATS}"
          + (f", {ms_all:.1f} ms for every format" if ms_all is not None else ""))
    print(f"files in {tmp}" if args.keep else f"(temp folder {tmp}; --keep DIR keeps the files)")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
