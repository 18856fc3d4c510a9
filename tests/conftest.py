"""Shared fixtures: tiny random-weight checkpoints with the real architectures, saved to a temp dir
and loaded through the public path (``LangSAM(sam_type=..., ckpt_path=...)``)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

# Under pytest-xdist (``-n 2``, the README's test command) each worker gets its share of the CPUs:
# torch would start one thread per CPU in every worker, twice as many threads as cores, slower than
# one each. Set before torch is imported; the subprocesses the tests start inherit it.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cpus // _WORKERS)))

import numpy as np
import pytest
from PIL import Image

from lang_sam.testing import (
    tiny_gdino_spec,
    tiny_sam_spec,
    write_gdino_checkpoint,
    write_sam_checkpoint,
)
from lang_sam.models.registry import register_model, unregister_model


#: Test modules that share one xdist scope: the scope runs on one worker, module after module.
#: ``ray``: one Ray instance at a time on the machine (two at once on 2 cores made a killed-actor test
#: take 87 s instead of 32). ``docs``: the notebook and the docs examples share one writing of the
#: stand-in checkpoints (30-60 s; once per worker process).
XDIST_SCOPES = {
    "test_ray.py": "ray", "test_track_ray.py": "ray", "test_sam3_weights.py": "ray",
    "test_docs_examples.py": "docs", "test_notebook.py": "docs",
}
#: Scopes handed out first, longest first (about 290 s and 210 s of the 2-core machine's 19-minute
#: serial suite of 2026-11-30): started last, either would be the run's tail.
XDIST_FIRST = ("ray", "docs")


def xdist_scope(nodeid: str) -> str:
    """The xdist work unit of a test: its module's file, or the shared scope it belongs to."""
    path = nodeid.split("::", 1)[0]
    return XDIST_SCOPES.get(Path(path).name, path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Schedule whole modules (their module-scoped fixtures, servers and Ray instances, start once),
    with the :data:`XDIST_SCOPES` kept together, in collection order (see
    :func:`pytest_collection_modifyitems`), whatever ``--dist`` says."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    config.option.loadscopereorder = False  # (xdist would put the modules with most tests first)
    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """On an xdist worker: the :data:`XDIST_FIRST` scopes first; otherwise the order is unchanged."""
    if _WORKERS > 1:
        rank = {scope: i for i, scope in enumerate(XDIST_FIRST)}
        items.sort(key=lambda item: rank.get(xdist_scope(item.nodeid), len(rank)))


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's real caches or reaches the network by accident."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf"))
    monkeypatch.setenv("HF_HOME", str(home / "hf_home"))
    monkeypatch.delenv("LANG_SAM_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("LANG_SAM_TRUST_CHECKPOINTS", raising=False)
    monkeypatch.setenv("LANG_SAM_OFFLINE", "1")  # tests that download turn it off themselves
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture(scope="session")
def tiny_specs():
    sam, gdino = tiny_sam_spec(), tiny_gdino_spec()
    register_model(sam)
    register_model(gdino)
    yield sam, gdino
    unregister_model("sam", sam.name)
    unregister_model("gdino", gdino.name)


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory, tiny_specs):
    d = tmp_path_factory.mktemp("ckpt")
    sam, gdino = tiny_specs
    write_sam_checkpoint(d / sam.filename, sam, seed=0)
    write_gdino_checkpoint(d / gdino.filename, gdino, seed=0)
    return d


@pytest.fixture(scope="session")
def sam_ckpt(ckpt_dir, tiny_specs):
    return ckpt_dir / tiny_specs[0].filename


@pytest.fixture(scope="session")
def gdino_ckpt(ckpt_dir, tiny_specs):
    return ckpt_dir / tiny_specs[1].filename


def load_tiny(sam_ckpt, gdino_ckpt, tiny_specs, **kwargs):
    from lang_sam import LangSAM

    return LangSAM(
        tiny_specs[0].name, str(sam_ckpt), gdino_type=tiny_specs[1].name,
        gdino_ckpt_path=str(gdino_ckpt), device="cpu", **kwargs,
    )


@pytest.fixture(scope="session")
def model(sam_ckpt, gdino_ckpt, tiny_specs):
    """The tiny models with the library's defaults."""
    return load_tiny(sam_ckpt, gdino_ckpt, tiny_specs)


@pytest.fixture(scope="session")
def exact_model(sam_ckpt, gdino_ckpt, tiny_specs):
    """The tiny models computing SAM's attention exactly as segment-anything does."""
    return load_tiny(sam_ckpt, gdino_ckpt, tiny_specs, fast_attention=False)


def make_image(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """A photo-like RGB uint8 image: smooth gradients plus a few solid shapes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1),
                    (xx + yy) * 255 // max(h + w - 2, 1)], -1).astype(np.uint8)
    for _ in range(3):
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        img[y0:y0 + h // 3, x0:x0 + w // 3] = rng.integers(0, 256, 3)
    return img


@pytest.fixture(scope="session")
def image() -> Image.Image:
    return Image.fromarray(make_image())


def bomb_png_bytes(width: int = 30000, height: int = 30000) -> bytes:
    """A valid all-black 1-bit PNG of ``width x height`` (a decompression bomb: 30000x30000 is 900
    megapixels, 2.7 GB as RGB, in about 110 kB). Written row by row with zlib, so that making it
    never holds the image in memory (PIL would need 900 MB to build it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter type 0, then the packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def bomb_png(tmp_path_factory):
    """The path of a 30000x30000 PNG of about 110 kB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(bomb_png_bytes())
    return path
