"""Would INT8 pay for GroundingDINO on OpenVINO? Each converted part at float32 against NNCF's INT8
weight compression, in one process (issue 27: INT8 only where it brings at least 1.3x).

    python benchmarks/bench_gdino_int8.py --cache W/openvino --gdino swint

``--cache`` is a conversion cache that already holds GroundingDINO's ``image`` and ``fuse`` parts
(``bench_cpu.py`` or one ``LangSAM(..., backend="openvino")`` predict leaves them beside the
weights; caches written before BERT stayed on PyTorch also hold a ``text`` part, measured too). Each
part's ``model.xml`` is read twice: as converted, and through ``nncf.compress_weights`` (INT8
asymmetric per channel; activations stay float32); both are compiled for the CPU at f32 and run on
the same seeded inputs of the part's shapes (bool masks all True, integer ids 0). Printed per part:
the fastest of ``--repeat`` runs each, the speed-up, and the largest difference of the first output
over its finite values.
"""

from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

import numpy as np


def inputs_for(model) -> list[np.ndarray]:
    """Seeded inputs of ``model``'s static shapes and types."""
    rng = np.random.default_rng(0)
    arrays = []
    for port in model.inputs:
        shape = [d.get_length() for d in port.get_partial_shape()]
        dtype = port.get_element_type().to_dtype()
        if dtype == np.bool_:  # token masks, attention, valid proposals: every token and proposal real
            arrays.append(np.ones(shape, dtype))
        elif np.issubdtype(dtype, np.integer):
            arrays.append(np.zeros(shape, dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(dtype))
    return arrays


def fastest(core, model, arrays: list[np.ndarray], threads: int, repeat: int) -> tuple[float, np.ndarray]:
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    request.infer(arrays)  # first call: allocations
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = request.infer(arrays)
        times.append(time.perf_counter() - start)
    return min(times), out[compiled.outputs[0]].copy()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", required=True, help="conversion cache folder holding the parts")
    p.add_argument("--gdino", default="swint", help="registry name (the entries' prefix)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: torch's)")
    args = p.parse_args(argv)
    import nncf
    import openvino as ov
    import torch

    threads = args.threads or torch.get_num_threads()
    core = ov.Core()
    print(f"OpenVINO {ov.__version__}, NNCF {nncf.__version__}, {threads} threads, torch capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    rows, total = [], [0.0, 0.0]
    for part in ("image", "text", "fuse"):
        found = sorted(glob.glob(str(Path(args.cache) / f"{args.gdino}-{part}-fp32-*" / "model.xml")))
        if not found and part == "text":  # BERT: converted only by lang-sam before 2026-12-06
            continue
        if not found:
            raise SystemExit(f"no {args.gdino} {part!r} part in {args.cache}: run one predict with backend='openvino'")
        arrays = inputs_for(core.read_model(found[0]))
        fp32, ref = fastest(core, core.read_model(found[0]), arrays, threads, args.repeat)
        int8, got = fastest(core, nncf.compress_weights(core.read_model(found[0])), arrays, threads, args.repeat)
        finite = np.isfinite(ref) & np.isfinite(got)
        diff = float(np.abs(ref[finite] - got[finite]).max()) if finite.any() else float("nan")
        rows.append((part, fp32, int8, diff))
        total[0], total[1] = total[0] + fp32, total[1] + int8
    print("| part | fp32 s | INT8 weights s | speed-up | max diff (first output) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for part, fp32, int8, diff in rows:
        print(f"| {part} | {fp32:.3f} | {int8:.3f} | {fp32 / int8:.2f}x | {diff:.3g} |")
    print(f"| all | {total[0]:.3f} | {total[1]:.3f} | {total[0] / total[1]:.2f}x | |")


if __name__ == "__main__":
    main()
