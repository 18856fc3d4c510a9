"""Shared fixtures: tiny random-weight checkpoints with the real architectures, saved to a temp dir
and loaded through the public path (``LangSAM(sam_type=..., ckpt_path=...)``)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lang_sam.testing import (
    tiny_gdino_spec,
    tiny_sam_spec,
    write_gdino_checkpoint,
    write_sam_checkpoint,
)
from lang_sam.hub import register_model, unregister_model


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
