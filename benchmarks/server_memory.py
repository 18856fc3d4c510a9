"""Peak memory of the HTTP server answering one ``box_threshold=0`` request (issue 8 §2).

    python benchmarks/server_memory.py [--size 1600x1200] [--queries 900] [-- extra server flags]

Starts ``lang-sam serve`` in a subprocess on tiny random-weight models (the real architectures,
see :mod:`lang_sam.testing`) whose GroundingDINO has ``--queries`` queries (the real models have
900, so ``box_threshold=0`` keeps 900 boxes), posts one PNG of ``--size`` with ``box_threshold=0``
and ``text_threshold=0``, and prints the server's resident memory after start-up and its peak
(``VmHWM`` from ``/proc/<pid>/status``, Linux only) after the answer, with the answer's size.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _tiny_specs(queries: int):
    """The tiny SAM, and the tiny GroundingDINO with ``queries`` queries."""
    from dataclasses import replace

    from lang_sam.hub import ModelSpec
    from lang_sam.testing import TINY_GDINO, tiny_sam_spec

    arch = replace(TINY_GDINO, overrides={**TINY_GDINO.overrides, "num_queries": queries})
    return tiny_sam_spec("mem_sam"), ModelSpec("gdino", "mem_gdino", "mem_gdino.pth", arch)


def serve(argv: list[str]) -> int:
    """In the server process: register the tiny types, then run ``lang-sam serve``."""
    from lang_sam.cli import main
    from lang_sam.models.registry import register_model

    queries = int(os.environ["MEM_QUERIES"])
    for spec in _tiny_specs(queries):
        register_model(spec)
    return main(["serve", *argv, "--sam-type", "mem_sam", "--gdino-type", "mem_gdino", "--device", "cpu"])


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1600x1200", help="WxH of the posted image")
    p.add_argument("--queries", type=int, default=900)
    p.add_argument("extra", nargs="*", help="flags passed to the server (after --)")
    args = p.parse_args()
    import httpx
    import numpy as np
    from PIL import Image

    from lang_sam.testing import write_gdino_checkpoint, write_sam_checkpoint

    w, h = (int(v) for v in args.size.lower().split("x"))
    sam, gdino = _tiny_specs(args.queries)
    with tempfile.TemporaryDirectory() as tmp:
        write_sam_checkpoint(Path(tmp) / sam.filename, sam, seed=0)
        write_gdino_checkpoint(Path(tmp) / gdino.filename, gdino, seed=0)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, __file__, "--serve", "--sam-ckpt", str(Path(tmp) / sam.filename),
               "--gdino-ckpt", str(Path(tmp) / gdino.filename), "--port", str(port), "--no-demo",
               *args.extra]
        env = {**os.environ, "MEM_QUERIES": str(args.queries), "LANG_SAM_OFFLINE": "1",
               "PYTHONWARNINGS": "ignore"}
        log = open(Path(tmp) / "server.log", "w+")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                if proc.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"server exited:\n{log.read()}")
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            rng = np.random.default_rng(0)
            yy, xx = np.mgrid[0:h, 0:w]
            arr = np.stack([xx * 255 // w, yy * 255 // h, rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="PNG")
            idle = status_kib(proc.pid, "VmRSS")
            t0 = time.perf_counter()
            r = httpx.post(url + "/predict", files={"image": ("x.png", buf.getvalue(), "image/png")},
                           data={"text_prompt": "cat", "box_threshold": "0", "text_threshold": "0"},
                           timeout=1800)
            seconds = time.perf_counter() - t0
            peak = status_kib(proc.pid, "VmHWM")
            body = r.json()
            print(f"image {w}x{h}, {args.queries} queries, server flags {args.extra or '(none)'}")
            print(f"status {r.status_code}: {len(body.get('masks', []))} masks, "
                  f"dropped {body.get('dropped', 'n/a')}, answer {len(r.content) / 2**20:.1f} MiB, "
                  f"{seconds:.1f} s")
            print(f"server RSS after start-up {idle / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB")
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        raise SystemExit(serve(sys.argv[2:]))
    raise SystemExit(main())
