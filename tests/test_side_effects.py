"""Model building and image reading change nothing another thread can see (issue 14 item 8).

Before: building a model swapped ``nn.Module.register_parameter`` for the whole process (a module
built meanwhile in another thread got meta parameters), and reading an image header set
``PIL.Image.MAX_IMAGE_PIXELS`` to None for everyone.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from PIL import Image
from torch import nn

from lang_sam.errors import ImageTooLargeError
from lang_sam.patches import empty_parameters, for_this_thread
from lang_sam.validation import open_image


def _in_thread(target) -> threading.Thread:
    errors: list[BaseException] = []

    def run():
        try:
            target()
        except BaseException as exc:  # reported by the test's thread
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.errors = errors
    t.start()
    return t


def test_empty_parameters_acts_for_the_building_thread_only():
    inside, go = threading.Event(), threading.Event()
    built = {}

    def build():
        with empty_parameters():
            inside.set()
            assert go.wait(30)
            built["mine"] = nn.Linear(4, 4)

    t = _in_thread(build)
    assert inside.wait(30)
    try:
        theirs = nn.Linear(4, 4)  # another thread, while the build is under way
    finally:
        go.set()
        t.join(30)
    assert not t.errors, t.errors
    assert theirs.weight.device.type == "cpu" and theirs.weight.abs().sum() > 0
    assert built["mine"].weight.device.type == "meta"


def test_for_this_thread_changes_the_calling_thread_only_and_restores():
    module = SimpleNamespace(f=lambda: "original")
    seen = {}
    with for_this_thread(module, "f", lambda: "replacement"):  # type: ignore[arg-type]
        seen["caller"] = module.f()
        other = threading.Thread(target=lambda: seen.__setitem__("other thread", module.f()))
        other.start()
        other.join()
    seen["after"] = module.f()
    assert seen == {"caller": "replacement", "other thread": "original", "after": "original"}
    with pytest.raises(RuntimeError, match="trace failed"):
        with for_this_thread(module, "f", lambda: "replacement"):  # type: ignore[arg-type]
            raise RuntimeError("trace failed")
    assert module.f() == "original"


def test_reading_a_huge_header_leaves_pillows_limit_alone(bomb_png):
    saved = Image.MAX_IMAGE_PIXELS
    seen: set = set()
    done = threading.Event()

    def read_bombs():
        try:
            for _ in range(200):
                with pytest.raises(ImageTooLargeError):
                    open_image(bomb_png, max_pixels=10_000)
        finally:
            done.set()

    t = _in_thread(read_bombs)
    while not done.is_set():
        seen.add(Image.MAX_IMAGE_PIXELS)
    t.join(30)
    assert not t.errors, t.errors
    assert seen <= {saved} and Image.MAX_IMAGE_PIXELS == saved
    # With no limit of ours, the header still opens (Pillow's guard is not what decides).
    with pytest.raises(ImageTooLargeError, match="30000x30000"):
        open_image(bomb_png, max_pixels=899_999_999)


def test_building_langsam_while_another_thread_builds_modules_and_reads_images(
        tiny_specs, sam_ckpt, gdino_ckpt, bomb_png):
    """The whole path: models built (both families) in one thread, torch modules built and large
    images opened in another, which sees real parameters and Pillow's own limit throughout."""
    from lang_sam import LangSAM

    sam, gdino = tiny_specs
    saved = Image.MAX_IMAGE_PIXELS
    register = nn.Module.register_parameter
    done = threading.Event()

    def build_models():
        try:
            for _ in range(2):
                LangSAM(sam.name, sam_ckpt, gdino_type=gdino.name, gdino_ckpt_path=gdino_ckpt, device="cpu")
        finally:
            done.set()

    t = _in_thread(build_models)
    meta, limits, n = 0, set(), 0
    while not done.is_set() or n == 0:
        layer = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
        meta += sum(p.device.type == "meta" for p in layer.parameters())
        limits.add(Image.MAX_IMAGE_PIXELS)
        with pytest.raises(ImageTooLargeError):
            open_image(bomb_png, max_pixels=1_000)
        n += 1
    t.join(60)
    assert not t.errors, t.errors
    assert meta == 0 and limits == {saved}, (meta, limits, n)
    assert nn.Module.register_parameter is register  # restored after each build
