"""SAM 3 against GroundingDINO + SAM, and SAM 3 through lang-sam against transformers directly.

    python benchmarks/bench_sam3.py                 # full-size random weights, assets/cat.jpg
    python benchmarks/bench_sam3.py --tiny          # a quick check of the script (tiny models)

Full-size random-weight checkpoints of the real architectures are written to a temp folder first
(compute does not depend on weight values): a SAM 3 folder (``Sam3Config()``, the released shape),
Swin-T + vit_b and Swin-B + vit_h (GroundingDINO written with ``few_boxes``: 16 boxes pass 0.3).
Random SAM 3 scores sit near 0.25, so a calibration process picks the threshold that keeps the 16
best queries of the first prompt; every SAM 3 side then uses it. Each side runs in a fresh process
(cold start and peak memory measured alike):

- ``sam3``: ``LangSAM(sam_type="sam3")``: load, ``predict(image, "cat")``, then a second prompt
  (``"ear"``) on the same image (cached vision features: text encoder and heads only);
- ``sam3-transformers``: ``Sam3Model`` + ``Sam3Processor`` + ``post_process_instance_segmentation``
  called directly, as transformers' documentation shows (the second prompt runs the whole model
  again: nothing is cached);
- ``swint+vit_b``, ``swinb+vit_h``: ``LangSAM(sam_type, gdino_type=...)``, the same calls.

Prints one JSON line per side and the ratios; peak RSS is the process's ``VmHWM``.
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
FIRST, SECOND = "cat", "ear"


def rss_mib() -> float:
    """This process's peak resident memory: ``VmHWM`` (reset by ``exec``, unlike ``ru_maxrss``,
    which a child started by a parent that wrote gigabytes of weights inherits)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: may be inherited


def side_main(side: str, weights: Path, image_path: str, threshold: float, out: Path) -> None:
    import torch
    from PIL import Image

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    image = Image.open(image_path).convert("RGB")
    res: dict = {"side": side}
    t = time.perf_counter()
    if side in ("sam3", "calibrate"):
        from lang_sam import LangSAM

        model = LangSAM(sam_type="sam3", ckpt_path=weights / "sam3", device="cpu")
        res["load_s"] = time.perf_counter() - t
        if side == "calibrate":
            scores = model.predict(image, FIRST, 0.0).logits.sort(descending=True).values
            res["threshold"] = float(scores[min(16, len(scores) - 1)])
        else:
            calls = [(FIRST, threshold), (SECOND, threshold)]
            for name, (prompt, thr) in zip(("first_s", "second_s"), calls):
                t = time.perf_counter()
                masks, boxes, phrases, logits = model.predict(image, prompt, thr)
                res[name] = time.perf_counter() - t
                res[name.replace("_s", "_n")] = len(phrases)
            res["vision_runs"] = model.segmenter.vision_runs
    elif side == "sam3-transformers":
        from transformers import Sam3Model, Sam3Processor

        model = Sam3Model.from_pretrained(weights / "sam3").eval()
        proc = Sam3Processor.from_pretrained(weights / "sam3")
        res["load_s"] = time.perf_counter() - t
        for name, prompt in (("first_s", FIRST), ("second_s", SECOND)):
            t = time.perf_counter()
            inputs = proc(images=image, text=prompt, return_tensors="pt")
            with torch.inference_mode():
                outputs = model(**inputs)
            r = proc.post_process_instance_segmentation(outputs, threshold=threshold,
                                                        target_sizes=inputs["original_sizes"].tolist())[0]
            res[name] = time.perf_counter() - t
            res[name.replace("_s", "_n")] = len(r["scores"])
    else:
        from lang_sam import LangSAM

        gdino, sam = side.split("+")
        model = LangSAM(sam, gdino_type=gdino, device="cpu")
        res["load_s"] = time.perf_counter() - t
        for name, prompt in (("first_s", FIRST), ("second_s", SECOND)):
            t = time.perf_counter()
            out_ = model.predict(image, prompt, 0.3, 0.25)
            res[name] = time.perf_counter() - t
            res[name.replace("_s", "_n")] = len(out_.phrases)
    res["peak_rss_mib"] = rss_mib()
    out.write_text(json.dumps(res))


def run_side(side: str, weights: Path, image: str, threshold: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    env = {**os.environ, "LANG_SAM_WEIGHTS_DIR": str(weights), "LANG_SAM_OFFLINE": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, __file__, "--side", side, "--weights", str(weights), "--image", image,
                    "--threshold", str(threshold), "--out", str(out)], check=True, env=env)
    res = json.loads(out.read_text())
    out.unlink()
    print(json.dumps(res), flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=str(ROOT / "assets" / "cat.jpg"))
    p.add_argument("--tiny", action="store_true", help="tiny SAM 3 only (checks the script)")
    p.add_argument("--weights", default=None, help="reuse a folder written by an earlier run")
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--threshold", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        side_main(args.side, Path(args.weights), args.image, args.threshold, Path(args.out))
        return
    sys.path.insert(0, str(ROOT))
    from lang_sam.testing import write_gdino_checkpoint, write_sam3_folder, write_sam_checkpoint

    started = time.perf_counter()
    weights = Path(args.weights or tempfile.mkdtemp(prefix="lang-sam-bench-sam3-"))
    if not (weights / "sam3" / "model.safetensors").is_file():
        print("writing the SAM 3 folder ...", file=sys.stderr, flush=True)
        write_sam3_folder(weights / "sam3", "tiny" if args.tiny else "full")
    sides = ["sam3-transformers", "sam3"]
    if not args.tiny:
        for sam, gdino, sam_file, gdino_file in (("vit_b", "swint", "sam_vit_b_01ec64.pth", "groundingdino_swint_ogc.pth"),
                                                 ("vit_h", "swinb", "sam_vit_h_4b8939.pth", "groundingdino_swinb_cogcoor.pth")):
            if not (weights / sam_file).is_file():
                print(f"writing {sam} ...", file=sys.stderr, flush=True)
                write_sam_checkpoint(weights / sam_file, sam)
            if not (weights / gdino_file).is_file():
                print(f"writing {gdino} (few_boxes) ...", file=sys.stderr, flush=True)
                write_gdino_checkpoint(weights / gdino_file, gdino, few_boxes=True, target_boxes=16,
                                       calibration_image=args.image)
            sides.append(f"{gdino}+{sam}")
    threshold = run_side("calibrate", weights, args.image, 0.0)["threshold"]
    results = {s: run_side(s, weights, args.image, threshold) for s in sides}
    lib, hf = results["sam3"], results["sam3-transformers"]
    print(f"\nSAM 3 threshold {threshold:.6f}; {time.perf_counter() - started:.0f} s in all")
    print(f"lang-sam / transformers, first call: {lib['first_s'] / hf['first_s']:.3f}x (target <= 1.02x)")
    print(f"lang-sam second prompt / its first: {lib['second_s'] / lib['first_s']:.3f}x (target <= 0.35x)")
    print(f"transformers second prompt / its first: {hf['second_s'] / hf['first_s']:.3f}x")
    print(f"{'side':<20}{'load s':>9}{'first s':>9}{'second s':>10}{'peak RSS MiB':>14}   vs sam3 (load/first/second/RSS)")
    for s, r in results.items():
        ratio = "/".join(f"{r[k] / lib[k]:.2f}" for k in ("load_s", "first_s", "second_s", "peak_rss_mib"))
        print(f"{s:<20}{r['load_s']:>9.1f}{r['first_s']:>9.1f}{r['second_s']:>10.1f}{r['peak_rss_mib']:>14.0f}   {ratio}")


if __name__ == "__main__":
    main()
