"""CPU speed, side by side in one run: the original algorithm vs LangSAM on PyTorch vs LangSAM on
OpenVINO (float32, then INT8), per engine pair (issue 27).

    python benchmarks/bench_cpu.py --pair swint+vit_b
    python benchmarks/bench_cpu.py --pair swinb+vit_h --pair swint+sam2.1_hiera_tiny --pair sam3

Full-size random-weight checkpoints of the real architectures are written to a temp folder first
(compute does not depend on weight values; GroundingDINO's with ``few_boxes`` so that ``--boxes``
queries pass 0.3, see bench.py). Every side runs in its own fresh process:

- reference: the original algorithm written plainly: bench.py's ``Original`` (groundingdino-py +
  ``SamPredictor``) for SAM v1 pairs, bench_sam2.py's ``Reference`` (+ Meta's
  ``SAM2ImagePredictor``) for SAM 2.1, transformers' own ``Sam3Model`` for SAM 3;
- pytorch: ``LangSAM(...)`` (float32);
- openvino: ``LangSAM(..., backend="openvino")``; a first process converts the parts (its time is
  printed as "first conversion": the load, which converts SAM's parts, and one predict on the image,
  which converts the parts made per input shape, GroundingDINO's), then the measured process starts with the conversion cache warm,
  as a second process (or a Ray worker) sees it;
- int8: ``LangSAM(..., backend="openvino", precision="int8")``, converted the same way.

The engines LangSAM cannot run on OpenVINO yet run on PyTorch there (a BackendFallbackWarning); as
they gain the backend, this script measures them with no change. Per side: cold start (build +
load), first predict, warm predict (a new image, everything encoded again on a warmed runtime), the
SAM image encoder alone (a third image), peak RSS; then the ratios to the reference and the
agreement of openvino with pytorch (boxes, scores, mask pixels) and of int8 with openvino fp32
(approximate by design).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
PROMPT = "cup"
from bench_sam3 import rss_mib  # noqa: E402  (peak RSS of this process: VmHWM)

SIDES = ("reference", "pytorch", "openvino", "int8")


def parse_pair(pair: str) -> tuple[str | None, str]:
    """``"swint+vit_b"`` -> ("swint", "vit_b"); ``"sam3"`` -> (None, "sam3")."""
    gdino, _, sam = pair.rpartition("+")
    return (gdino or None), sam


def write_pair_weights(weights: Path, pair: str, boxes: int, image: str) -> None:
    from lang_sam.models.registry import get_spec
    from lang_sam.testing import write_gdino_checkpoint, write_sam2_checkpoint, write_sam3_folder, write_sam_checkpoint

    gdino, sam = parse_pair(pair)
    print(f"writing random {pair} checkpoints to {weights} ...", flush=True)
    if sam == "sam3":
        write_sam3_folder(weights / "sam3", "full")
        return
    spec = get_spec("sam", sam)
    if spec.filename.endswith(".pt") or sam.startswith("sam2"):
        write_sam2_checkpoint(weights / spec.filename, sam)
    else:
        write_sam_checkpoint(weights / spec.filename, sam)
    write_gdino_checkpoint(weights / get_spec("gdino", gdino).filename, gdino, few_boxes=True,
                           target_boxes=boxes, calibration_image=image)


class Sam3Reference:
    """transformers' own SAM 3 (``Sam3Model`` + ``Sam3Processor``)."""

    def __init__(self, weights: Path):
        from transformers import Sam3Model, Sam3Processor

        self.model = Sam3Model.from_pretrained(weights / "sam3").eval()
        self.proc = Sam3Processor.from_pretrained(weights / "sam3")

    def predict(self, image, prompt, threshold=0.3):
        import torch

        inputs = self.proc(images=image, text=prompt, return_tensors="pt")
        with torch.inference_mode():
            outputs = self.model(**inputs)
        r = self.proc.post_process_instance_segmentation(outputs, threshold=threshold,
                                                         target_sizes=inputs["original_sizes"].tolist())[0]
        return r["masks"].bool(), r["boxes"], ["" for _ in r["scores"]], r["scores"]


def load_side(side: str, pair: str, weights: Path):
    gdino, sam = parse_pair(pair)
    if side == "reference":
        if sam == "sam3":
            return Sam3Reference(weights)
        if sam.startswith("sam2"):
            from bench_sam2 import Reference

            return Reference(sam, gdino, weights)
        from bench import Original

        return Original(sam, gdino, weights)
    import warnings

    from lang_sam import LangSAM

    os.environ["LANG_SAM_WEIGHTS_DIR"] = str(weights)
    os.environ["LANG_SAM_OFFLINE"] = "1"
    kw = {"backend": "openvino"} if side in ("openvino", "int8", "convert", "convert-int8") else {}
    if side in ("int8", "convert-int8"):
        kw["precision"] = "int8"
    ckpt = weights / "sam3" if sam == "sam3" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LangSAM(sam, ckpt, gdino_type=gdino or "swint", device="cpu", **kw)


def encode_sam(side: str, model, pixels) -> float | None:
    """Seconds for the SAM image encoder alone on ``pixels`` (no cache)."""
    t = time.perf_counter()
    if side == "reference":
        sam = getattr(model, "sam", None)
        if sam is None:
            return None
        sam.set_image(pixels)
    elif getattr(model.segmenter, "takes_boxes", False):
        model.segmenter.encode(pixels)
    else:
        return None
    return time.perf_counter() - t


def side_main(side: str, pair: str, weights: Path, image_path: str, out: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    torch.manual_seed(0)
    image = Image.open(image_path).convert("RGB")
    t0 = time.perf_counter()
    model = load_side(side, pair, weights)
    res: dict = {"cold_start": time.perf_counter() - t0}
    if side.startswith("convert"):  # parts converted on first use (per shape) are converted here too
        t0 = time.perf_counter()
        with torch.no_grad():
            model.predict(image, PROMPT)
        res["first_use"] = time.perf_counter() - t0
        out.write_text(json.dumps(res))
        return
    with torch.no_grad():
        t0 = time.perf_counter()
        first = model.predict(image, PROMPT)
        res["first_predict"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.predict(ImageOps.mirror(image), PROMPT)
        res["warm_predict"] = time.perf_counter() - t0
        res["sam_encoder"] = encode_sam(side, model, np.asarray(ImageOps.flip(image)))
    res["boxes"] = len(first[1])
    res["peak_rss_mib"] = rss_mib()
    torch.save({"masks": torch.as_tensor(first[0]).bool(), "boxes": torch.as_tensor(first[1]).float(),
                "scores": torch.as_tensor(first[3]).float()}, out.with_suffix(".pt"))
    out.write_text(json.dumps(res))


def agreement(a: dict, b: dict) -> str:
    if a["boxes"].shape != b["boxes"].shape:
        return f"{len(a['boxes'])} vs {len(b['boxes'])} boxes"
    if not len(a["boxes"]):
        return "no boxes either side"
    box = (a["boxes"] - b["boxes"]).abs().max().item()
    score = (a["scores"] - b["scores"]).abs().max().item()
    masks = (a["masks"] == b["masks"]).float().mean().item() if a["masks"].shape == b["masks"].shape else float("nan")
    return (f"{len(a['boxes'])} boxes, max box diff {box:.3g} px, max score diff {score:.3g}, "
            f"mask pixels agreeing {masks * 100:.4f} %")


def run_pair(pair: str, weights: Path, tmp: Path, image: str, keep_cache: bool, sides: list[str]) -> dict:
    results: dict = {}
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if not keep_cache:
        shutil.rmtree(weights / "openvino", ignore_errors=True)
        shutil.rmtree(weights / "sam3" / "openvino", ignore_errors=True)
    for side in sides:
        steps = ([f"convert{'-int8' if side == 'int8' else ''}"] if side in ("openvino", "int8") else []) + [side]
        for step in steps:
            out = tmp / f"{pair}-{step}.json"
            cmd = [sys.executable, __file__, "--side", step, "--pair", pair, "--weights", str(weights),
                   "--image", image, "--out", str(out)]
            subprocess.run(cmd, check=True, env=env)
            results[step] = json.loads(out.read_text())
            print(f"  {pair} {step:12} {results[step]}", flush=True)
    return results


def report(pair: str, tmp: Path, results: dict) -> None:
    import torch

    saved = {s: torch.load(tmp / f"{pair}-{s}.pt", weights_only=False) for s in SIDES if s in results}
    print(f"\n### {pair}\n")
    if "openvino" in saved and "pytorch" in saved:
        print(f"openvino fp32 vs pytorch: {agreement(saved['pytorch'], saved['openvino'])}")
    if "int8" in saved and "openvino" in saved:
        print(f"int8 vs openvino fp32 (approximate): {agreement(saved['openvino'], saved['int8'])}")
    if "pytorch" in saved and "reference" in saved:
        print(f"pytorch vs reference: {agreement(saved['reference'], saved['pytorch'])}")
    for conv in ("convert", "convert-int8"):
        if conv in results:
            r = results[conv]
            print(f"first conversion ({conv}, cold cache: convert + compile + load {r['cold_start']:.1f} s, "
                  f"first predict {r.get('first_use', 0.0):.1f} s): {r['cold_start'] + r.get('first_use', 0.0):.1f} s")
    sides = [s for s in SIDES if s in results]
    ref = results.get("reference")
    print("\n| measure | " + " | ".join(sides) + " |\n| --- |" + " ---: |" * len(sides))
    for key, name in (("cold_start", "cold start, s (cache warm)"), ("first_predict", "first predict, s"),
                      ("warm_predict", "warm predict (new image), s"), ("sam_encoder", "SAM image encoder alone, s"),
                      ("peak_rss_mib", "peak RSS, MiB")):
        cells = []
        for s in sides:
            v = results[s].get(key)
            r = ref.get(key) if ref else None
            cells.append("n/a" if v is None else f"{v:.1f}" + (f" ({v / r:.2f}x)" if r and s != "reference" else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")


def cpu_line() -> str:
    import platform

    import torch

    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import openvino
        ov = openvino.__version__
    except ImportError:
        ov = "not installed"
    return (f"CPU: {model}; torch {torch.__version__} capability {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads; OpenVINO {ov}; load average {os.getloadavg()[0]:.2f}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="CPU speed: original vs LangSAM PyTorch vs OpenVINO fp32 vs INT8")
    p.add_argument("--pair", action="append", default=None,
                   help="engine pair: swinb+vit_h, swint+vit_b, swint+sam2.1_hiera_tiny, sam3 (repeatable; "
                        "default swint+vit_b)")
    p.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated subset of {','.join(SIDES)}")
    p.add_argument("--image", default=str(ROOT / "assets" / "coffee.jpg"))
    p.add_argument("--boxes", type=int, default=16, help="boxes GroundingDINO finds on the image")
    p.add_argument("--weights", default=None, help="reuse a folder of checkpoints (canonical names)")
    p.add_argument("--keep-cache", action="store_true", help="keep an existing conversion cache (no conversion timed)")
    p.add_argument("--side", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    p.add_argument("--write-weights", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    pairs = args.pair or ["swint+vit_b"]
    if args.write_weights:
        write_pair_weights(Path(args.write_weights), pairs[0], args.boxes, args.image)
        return
    if args.side:
        side_main(args.side, pairs[0], Path(args.weights), args.image, Path(args.out))
        return
    tmp = Path(tempfile.mkdtemp(prefix="lang-sam-bench-cpu-"))
    print(f"outputs in {tmp}\n{cpu_line()}", flush=True)
    for pair in pairs:
        weights = Path(args.weights) if args.weights else tmp / "weights" / pair
        if not args.weights:  # in a child process: this one stays small while the sides run
            subprocess.run([sys.executable, __file__, "--write-weights", str(weights), "--pair", pair,
                            "--boxes", str(args.boxes), "--image", args.image], check=True)
        results = run_pair(pair, weights, tmp, args.image, args.keep_cache, args.sides.split(","))
        report(pair, tmp, results)
        if not args.weights:
            shutil.rmtree(weights, ignore_errors=True)
    print(f"\n{cpu_line()}")


if __name__ == "__main__":
    main()
