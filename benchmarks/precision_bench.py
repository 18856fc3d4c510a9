"""bf16 against float32 on this CPU, with its own instructions and limited to AVX2, in one run.

    python benchmarks/precision_bench.py                  # vit_b + Swin-T, coffee.jpg
    python benchmarks/precision_bench.py --weights DIR    # reuse checkpoints (canonical names)

Each configuration runs in a fresh process on the same full-size random-weight checkpoints: load,
then one predict (timed: the "first predict", both image encoders included) and a second prompt on
the same image. "native" is the CPU as it is; "AVX2" sets ``ONEDNN_MAX_CPU_ISA=AVX2`` and
``ATEN_CPU_CAPABILITY=avx2``, so oneDNN and ATen use the kernels an AVX2-only CPU (no AVX-512-BF16,
no AMX) would run: bfloat16 is emulated there. Prints each time and the ratio bf16 / fp32 per ISA.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ISAS = {"native": {}, "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}


def run_one(sam: str, gdino: str, weights: Path, image_path: str, precision: str, out: Path) -> None:
    import torch
    from PIL import Image

    from lang_sam import LangSAM
    from lang_sam.precision import native_bf16

    os.environ["LANG_SAM_WEIGHTS_DIR"] = str(weights)
    os.environ["LANG_SAM_OFFLINE"] = "1"
    image = Image.open(image_path).convert("RGB")
    model = LangSAM(sam, gdino_type=gdino, device="cpu", precision=precision)
    t0 = time.perf_counter()
    first = model.predict(image, "cup")
    t1 = time.perf_counter()
    model.predict(image, "spoon")
    t2 = time.perf_counter()
    out.write_text(json.dumps({"first": t1 - t0, "second": t2 - t1, "boxes": len(first[1]),
                               "native_bf16": native_bf16(torch.device("cpu")),
                               "capability": torch.backends.cpu.get_cpu_capability()}))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="bf16 vs float32 on this CPU, native and AVX2-limited")
    p.add_argument("--sam", default="vit_b")
    p.add_argument("--gdino", default="swint")
    p.add_argument("--image", default=str(ROOT / "assets" / "coffee.jpg"))
    p.add_argument("--boxes", type=int, default=16)
    p.add_argument("--weights", default=None)
    p.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        run_one(args.sam, args.gdino, Path(args.weights), args.image, args.one[0], Path(args.one[1]))
        return
    tmp = Path(tempfile.mkdtemp(prefix="lang-sam-precision-"))
    weights = Path(args.weights) if args.weights else tmp / "weights"
    if not args.weights:
        from bench import write_weights  # benchmarks/bench.py, beside this script

        write_weights(weights, args.sam, args.gdino, args.boxes, args.image)
    results: dict[tuple[str, str], dict] = {}
    for isa, env in ISAS.items():
        for precision in ("fp32", "bf16"):
            out = tmp / f"{isa}-{precision}.json"
            cmd = [sys.executable, __file__, "--sam", args.sam, "--gdino", args.gdino, "--weights",
                   str(weights), "--image", args.image, "--one", precision, str(out)]
            subprocess.run(cmd, check=True, env={**os.environ, **env, "PYTHONWARNINGS": "ignore"})
            results[isa, precision] = r = json.loads(out.read_text())
            print(f"  {isa:6} {precision}: first predict {r['first']:.1f} s, second prompt "
                  f"{r['second']:.1f} s, {r['boxes']} boxes (ATen {r['capability']}, native bf16 "
                  f"{r['native_bf16']})", flush=True)
    print("\n| ISA | fp32 first predict, s | bf16 first predict, s | bf16 / fp32 |")
    print("| --- | --- | --- | --- |")
    for isa in ISAS:
        f, b = results[isa, "fp32"]["first"], results[isa, "bf16"]["first"]
        print(f"| {isa} | {f:.1f} | {b:.1f} | {b / f:.2f}x |")


if __name__ == "__main__":
    main()
