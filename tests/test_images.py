"""Image loading and conversion: modes, bit depths, EXIF orientation, bad files."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from conftest import bomb_png_bytes
from lang_sam.errors import ImageNotFoundError, ImageTooLargeError, InvalidImageError
from lang_sam.settings import DEFAULT_MAX_IMAGE_PIXELS, max_image_pixels
from lang_sam.utils import load_image
from lang_sam.validation import open_image, to_rgb_array, to_rgb_pil


def _save(tmp_path, img, name, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "1", "RGB"])
def test_modes_become_rgb(tmp_path, mode):
    base = Image.fromarray(np.arange(12 * 16 * 3, dtype=np.uint8).reshape(12, 16, 3))
    img = base.convert(mode)
    ext = "tiff" if mode == "CMYK" else "png"
    out = load_image(_save(tmp_path, img, f"x.{ext}"))
    assert out.mode == "RGB" and out.size == (16, 12)
    assert np.array_equal(np.asarray(out), np.asarray(img.convert("RGB")))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 32).reshape(32, 64)).astype(np.uint16)
    path = _save(tmp_path, Image.fromarray(ramp), "deep.png")
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(load_image(path))
    assert out.shape == (32, 64, 3) and out.dtype == np.uint8
    expected = np.round(ramp / 257.0).astype(np.uint8)
    assert np.array_equal(out[..., 0], expected)
    assert out.max() == 255 and out.min() == 0 and len(np.unique(out)) > 200


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, :5] = 255  # a white band on the left
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(tmp_path, img, "rot.jpg", exif=exif, quality=95)
    out = np.asarray(load_image(path))
    assert out.shape == (30, 10, 3)
    assert out[:5, :, 0].mean() > 200 and out[-5:, :, 0].mean() < 50  # band now on top


@pytest.mark.parametrize("arr,shape", [
    (np.zeros((5, 6), np.uint8), (5, 6, 3)),
    (np.zeros((5, 6, 1), np.uint8), (5, 6, 3)),
    (np.zeros((5, 6, 4), np.uint8), (5, 6, 3)),
    (np.full((5, 6, 3), 65535, np.uint16), (5, 6, 3)),
    (np.ones((5, 6, 3), np.float32), (5, 6, 3)),
    (np.ones((5, 6), bool), (5, 6, 3)),
])
def test_array_inputs(arr, shape):
    out = to_rgb_array(arr)
    assert out.shape == shape and out.dtype == np.uint8 and out.flags.c_contiguous


def test_array_values():
    assert to_rgb_array(np.full((2, 2, 3), 65535, np.uint16)).max() == 255
    assert to_rgb_array(np.ones((2, 2, 3), np.float32)).min() == 255
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 1] = 7
    assert np.array_equal(to_rgb_array(rgba)[..., 1], np.full((2, 2), 7))


@pytest.mark.parametrize("bad,match", [
    (np.zeros((3, 3, 3), np.int8) - 1, ">= 0"),
    (np.zeros((2, 3, 4, 5), np.uint8), "shape"),
    (np.zeros((3, 0), np.uint8), "zero size"),
    (np.array([[["a"]]]), "dtype"),
])
def test_bad_arrays(bad, match):
    with pytest.raises(InvalidImageError, match=match):
        to_rgb_array(bad)


def test_zero_size_pil_and_missing_file(tmp_path):
    with pytest.raises(InvalidImageError, match="zero size"):
        to_rgb_pil(Image.new("RGB", (0, 5)))
    with pytest.raises(ImageNotFoundError) as err:
        load_image(tmp_path / "nope.png")
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(ImageNotFoundError):
        load_image(tmp_path)  # a folder is not an image file


# ------------------------------------------------------------------------------------------
# Decompression bombs and the pixel limit (LANG_SAM_MAX_IMAGE_PIXELS)
# ------------------------------------------------------------------------------------------

def test_decompression_bomb_is_refused_from_its_header(bomb_png, monkeypatch):
    """A 110 kB PNG of 30000x30000 pixels (2.7 GB as RGB) is refused before anything is decoded,
    from a path, its bytes or an open file, and Pillow's own process-wide guard is left as it was."""
    monkeypatch.delenv("LANG_SAM_MAX_IMAGE_PIXELS", raising=False)
    assert bomb_png.stat().st_size < 200_000
    pillow_guard = Image.MAX_IMAGE_PIXELS
    data = bomb_png.read_bytes()
    with open(bomb_png, "rb") as f:
        for source in (bomb_png, str(bomb_png), data, f):
            started = time.perf_counter()
            with pytest.raises(ImageTooLargeError) as err:
                open_image(source)
            assert time.perf_counter() - started < 5, "the image was decoded"
            assert isinstance(err.value, InvalidImageError) and isinstance(err.value, ValueError)
            msg = str(err.value)
            assert "30000x30000" in msg and "900,000,000" in msg and "256,000,000" in msg
            assert "LANG_SAM_MAX_IMAGE_PIXELS" in msg
            # what a caller reads, never parsing the message
            assert (err.value.width, err.value.height, err.value.limit) == (30000, 30000, 256_000_000)
    with pytest.raises(ImageTooLargeError, match="bomb.png"):
        load_image(bomb_png)  # the original's lang_sam.utils.load_image
    assert Image.MAX_IMAGE_PIXELS == pillow_guard


def test_pixel_limit_setting_lowers_and_raises_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    path.write_bytes(bomb_png_bytes(40, 25))  # 1000 pixels
    monkeypatch.setenv("LANG_SAM_MAX_IMAGE_PIXELS", "999")
    with pytest.raises(ImageTooLargeError, match="40x25 = 1,000 pixels, over the limit of 999"):
        load_image(path)
    monkeypatch.setenv("LANG_SAM_MAX_IMAGE_PIXELS", "1_000")
    assert load_image(path).size == (40, 25)
    with pytest.raises(ImageTooLargeError):
        open_image(path, max_pixels=999)  # an explicit limit wins over the setting
    assert open_image(path, max_pixels=None).size == (40, 25)


@pytest.mark.parametrize("value,limit", [
    (None, DEFAULT_MAX_IMAGE_PIXELS), ("", DEFAULT_MAX_IMAGE_PIXELS), ("300_000_000", 300_000_000),
    (" 1000 ", 1000), ("0", None), ("none", None), ("off", None),
])
def test_pixel_limit_values(monkeypatch, value, limit):
    if value is None:
        monkeypatch.delenv("LANG_SAM_MAX_IMAGE_PIXELS", raising=False)
    else:
        monkeypatch.setenv("LANG_SAM_MAX_IMAGE_PIXELS", value)
    assert max_image_pixels() == limit
    assert DEFAULT_MAX_IMAGE_PIXELS == 256_000_000


@pytest.mark.parametrize("value", ["lots", "1e9", "-5", "12.5"])
def test_bad_pixel_limit_is_a_clear_value_error(tmp_path, monkeypatch, value):
    path = tmp_path / "small.png"
    path.write_bytes(bomb_png_bytes(4, 4))
    monkeypatch.setenv("LANG_SAM_MAX_IMAGE_PIXELS", value)
    with pytest.raises(ValueError, match=r"LANG_SAM_MAX_IMAGE_PIXELS must be") as err:
        load_image(path)
    assert repr(value) in str(err.value) or value in str(err.value)


# --- Images too thin for an engine's resize (issue 25 item 3) ---------------------------------------
# The tiny engines' inputs: GroundingDINO's short side 320 px, long side at most 533 (an image's long
# side must be less than 2 x 533 = 1066 times its short one), SAM v1's long side 256 px (at most
# 2 x 256 = 512 times); SAM 2.1 and SAM 3 resize to a fixed square and take any image. Each call on
# a thin image raised a plain ValueError ("height and width must be > 0") from Pillow.

@pytest.fixture(scope="module")
def thin_models(tmp_path_factory, model, gdino_ckpt, tiny_specs):
    """``engine -> LangSAM``: tiny SAM v1, SAM 2.1 (each with the tiny GroundingDINO) and SAM 3."""
    from lang_sam import LangSAM
    from lang_sam.models.registry import register_model, unregister_model
    from lang_sam.testing import tiny_sam2_spec, write_sam2_checkpoint

    spec = register_model(tiny_sam2_spec("tiny_sam2_thin"))
    ckpt = write_sam2_checkpoint(tmp_path_factory.mktemp("thin") / spec.filename, spec)
    models = {"sam": model, "sam2": LangSAM(spec.name, str(ckpt), gdino_type=tiny_specs[1].name,
                                            gdino_ckpt_path=str(gdino_ckpt), device="cpu")}
    try:
        import transformers.models.sam3  # noqa: F401  (SAM 3 needs transformers>=5)

        from lang_sam.testing import write_sam3_folder

        folder = write_sam3_folder(tmp_path_factory.mktemp("thin3") / "sam3", "tiny")
        models["sam3"] = LangSAM(sam_type="sam3", ckpt_path=folder, device="cpu")
    except ImportError:
        pass
    yield models
    unregister_model("sam", spec.name)


def _calls():
    from lang_sam.tiling import TileSpec

    return {
        "predict": lambda m, im: m.predict(im, "thing", box_threshold=0.0, text_threshold=0.0),
        "predict_tile": lambda m, im: m.predict(im, "thing", box_threshold=0.0, text_threshold=0.0,
                                                       tile=TileSpec(size=1024)),
        "predict_dino": lambda m, im: m.predict_dino(im, "thing", 0.0, 0.0),
        "segment": lambda m, im: m.segment(im, boxes=[0, 0, 1, 1]),
        "predict_sam": lambda m, im: m.predict_sam(im, [[0, 0, 1, 1]]),
        "generate": lambda m, im: m.generate(im, points_per_side=2),
    }


#: (engine, entry point, width x height) -> None (it works) or words of the ImageTooThinError.
GDINO_THIN = "too thin for GroundingDINO: its resize (short side to 320 px, long side at most 533 px)"
SAM_THIN = "too thin for SAM 'tiny_sam': its resize (long side to 256 px)"
THIN = {
    **{("sam", call, size): SAM_THIN  # SAM's limit is checked first: before any detection
       for call in ("predict", "segment", "predict_sam", "generate")
       for size in ((2000, 1), (5000, 2), (100000, 1), (1, 2000), (513, 1))},
    ("sam", "predict_dino", (100000, 1)): GDINO_THIN,
    ("sam", "predict_dino", (1, 1066)): GDINO_THIN,
    ("sam", "predict_dino", (1, 1065)): None,
    ("sam", "segment", (512, 1)): None,  # 512 x 256/512 = 0.5 px rounds up to 1
    ("sam", "predict", (1, 1)): None,
    ("sam", "predict_tile", (2000, 1)): "a 1024x1 tile of the 2000x1 image is too thin for SAM",
    **{("sam2", "predict", size): GDINO_THIN for size in ((2000, 1), (5000, 2), (100000, 1), (1, 2000))},
    ("sam2", "predict", (1065, 1)): None,
    ("sam2", "predict", (1, 1)): None,
    **{("sam2", call, size): None for call in ("segment", "generate")
       for size in ((2000, 1), (5000, 2), (100000, 1), (1, 2000))},
    ("sam2", "predict_tile", (1, 2000)): None,
    **{("sam3", call, size): None for call in ("predict", "predict_tile")
       for size in ((2000, 1), (5000, 2), (1, 2000))},
    ("sam3", "predict", (100000, 1)): None,
}


@pytest.mark.parametrize("engine,call,size", list(THIN), ids=[f"{e}-{c}-{w}x{h}" for e, c, (w, h) in THIN])
def test_a_thin_image_is_refused_by_the_engine_it_does_not_fit_or_works(thin_models, engine, call, size):
    from lang_sam.errors import ImageTooThinError

    if engine not in thin_models:
        pytest.skip("SAM 3 needs transformers>=5")
    m = thin_models[engine]
    image = Image.new("RGB", size, (90, 120, 200))
    words = THIN[engine, call, size]
    if words is None:
        out = _calls()[call](m, image)
        masks = out.masks if hasattr(out, "masks") else out[0] if isinstance(out, tuple) else out
        if call in ("predict", "segment", "generate"):
            assert tuple(masks.shape[-2:]) in ((size[1], size[0]), (0,)) or masks.shape[0] == 0
        return
    with pytest.raises(ImageTooThinError) as err:
        _calls()[call](m, image)
    e = err.value
    assert isinstance(e, InvalidImageError) and isinstance(e, ValueError)
    msg = str(e)
    assert words in msg and f"{size[0]}x{size[1]}" in msg and "expected each side >= 1 pixel" in msg, msg
    checked = (1024, 1) if call == "predict_tile" else size  # a tile, with tiles
    assert (e.width, e.height) == checked and min(e.resized) == 0


@pytest.mark.parametrize("size", [(1, 1), (2000, 1), (1, 2000), (1065, 1), (1066, 1), (5000, 2), (640, 480),
                                  (533, 320), (320, 533)])
def test_the_detector_resize_rule_is_groundingdinos(model, size):
    """``resized_size`` copies groundingdino's ``get_size_with_aspect_ratio``: the same sizes, or
    the same refusal where groundingdino's resize would fail."""
    from groundingdino.datasets.transforms import resize

    det = model.detector
    h, w = det.resized_size(size[1], size[0])
    image = Image.new("RGB", size)
    if min(h, w) < 1:
        with pytest.raises(ValueError):
            resize(image, None, det.input_size[0], det.input_size[1])
    else:
        out, _ = resize(image, None, det.input_size[0], det.input_size[1])
        assert out.size == (w, h)
