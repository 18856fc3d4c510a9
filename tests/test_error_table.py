"""Every bad input at a public entry point is a typed error (issue 14 item 6): a ``LangSAMError``
subclass that is also the built-in it replaces, so ``except ValueError`` code keeps working, with a
message naming what was expected and what arrived. One table for the library, one for the CLI
(the server's is ``tests/test_server.py::test_no_client_input_is_a_5xx``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image
from lang_sam import LangSAM, errors, utils
from lang_sam.cli import main
from lang_sam.labeling import ClassMap, LabelSettings, label_folder, write_instance_masks
from lang_sam.tiling import TileSpec

IMAGE = Image.fromarray(make_image(48, 64))


def _ctor(**kwargs):
    return lambda model, tmp: LangSAM(**kwargs)


#: id -> (call(model, tmp_path), the typed error, the built-in it must also be, words of the message)
LIBRARY = {
    "unknown SAM type": (_ctor(sam_type="vit_x"), errors.UnknownModelError, ValueError, "vit_x"),
    "unknown GroundingDINO type": (_ctor(gdino_type="swinx"), errors.UnknownModelError, ValueError, "swinx"),
    "device name": (_ctor(device="gpu"), errors.DeviceError, ValueError, "gpu"),
    "precision": (_ctor(precision="fp8"), errors.InvalidPrecisionError, ValueError, "fp8"),
    "cache size": (_ctor(cache_size=-1), errors.InvalidArgumentError, ValueError, "-1"),
    "empty prompt": (lambda m, t: m.predict(IMAGE, ""), errors.InvalidPromptError, ValueError, "prompt"),
    "threshold": (lambda m, t: m.predict(IMAGE, "car", box_threshold=2), errors.InvalidThresholdError,
                  ValueError, "2"),
    "empty image": (lambda m, t: m.predict(np.zeros((0, 0, 3), np.uint8), "car"), errors.InvalidImageError,
                    ValueError, "0"),
    "image too thin": (lambda m, t: m.predict(Image.new("RGB", (100000, 1)), "car"), errors.ImageTooThinError,
                       ValueError, "100000x1 is too thin"),
    "image path missing": (lambda m, t: utils.load_image(t / "nope.png"), errors.ImageNotFoundError,
                           FileNotFoundError, "nope.png"),
    "boxes of 3 numbers": (lambda m, t: m.predict_sam(IMAGE, [[1, 2, 3]]), errors.InvalidPromptError,
                           ValueError, "(N, 4)"),
    "infinite point": (lambda m, t: m.segment(IMAGE, points=[[1e39, 0]]), errors.InvalidPromptError,
                       ValueError, "finite"),
    "segment with nothing": (lambda m, t: m.segment(IMAGE), errors.InvalidPromptError, ValueError, "boxes"),
    "one prompt to predict_prompts": (lambda m, t: m.predict_prompts(IMAGE, "car"),
                                      errors.InvalidPromptTypeError, TypeError, "list"),
    "no prompts": (lambda m, t: m.predict_prompts(IMAGE, []), errors.InvalidPromptError, ValueError, "empty"),
    "prompt before an image": (lambda m, t: LangSAM.predict_prompt(_fresh(m), "car"), errors.NoImageError,
                               RuntimeError, "set_image"),
    "labels for draw_image": (lambda m, t: utils.draw_image(np.zeros((8, 8, 3), np.uint8),
                                                            np.zeros((2, 8, 8), bool), np.zeros((2, 4)), ["a"]),
                              errors.InvalidArgumentError, ValueError, "2 boxes but 1 labels"),
    "class spec": (lambda m, t: ClassMap.parse(["=car"]), errors.InvalidClassMapError, ValueError, "=car"),
    "unknown class": (lambda m, t: ClassMap.parse(["car"]).id_of("boat"), errors.UnknownClassError,
                      KeyError, "boat"),
    "labels for mask PNGs": (lambda m, t: write_instance_masks(t, np.zeros((2, 4, 4), bool), ["a"]),
                             errors.InvalidArgumentError, ValueError, "2 masks but 1 labels"),
    "tile size": (lambda m, t: TileSpec(size=8), errors.InvalidTileError, ValueError, "8"),
    "missing input folder": (lambda m, t: label_folder(m, [t / "nope"], t / "out", LabelSettings.create("car")),
                             errors.InvalidRunError, ValueError, "nope"),
}


def _fresh(model):
    """The model with no image set (``predict_prompt`` must say so, not fail inside SAM)."""
    model._pinned = None
    return model


@pytest.mark.parametrize("case", list(LIBRARY))
def test_library_errors_are_typed(case, model, tmp_path, monkeypatch):
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))  # nothing loads from anywhere
    call, kind, builtin, words = LIBRARY[case]
    with pytest.raises(kind) as err:
        call(model, tmp_path)
    assert isinstance(err.value, errors.LangSAMError) and isinstance(err.value, builtin)
    assert words in str(err.value), str(err.value)


def test_the_setting_error_names_the_variable(monkeypatch):
    from lang_sam.settings import max_image_pixels

    monkeypatch.setenv("LANG_SAM_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(errors.InvalidSettingError) as err:
        max_image_pixels()
    assert (err.value.name, err.value.value) == ("LANG_SAM_MAX_IMAGE_PIXELS", "lots")


#: argv after ``predict IMAGE --output OUT`` -> words of the one error line (exit status 2)
CLI = {
    "no prompt": ([], "--prompt"),
    "threshold": (["--prompt", "car", "--box-threshold", "2"], "--box-threshold"),
    "tile": (["--prompt", "car", "--tile", "8"], "tile"),
    "class spec": (["--classes", "=car"], "=car"),
    "format": (["--prompt", "car", "--format", "gif"], "gif"),
    "device": (["--prompt", "car", "--device", "gpu"], "gpu"),
    "precision": (["--prompt", "car", "--precision", "fp8"], "fp8"),
    "sam type": (["--prompt", "car", "--sam-type", "vit_x"], "vit_x"),
    "nms": (["--prompt", "car", "--nms", "1.5"], "1.5"),
}


@pytest.mark.parametrize("case", list(CLI))
def test_cli_usage_errors_are_one_line_and_exit_2(case, tmp_path, capsys):
    argv, words = CLI[case]
    photo = tmp_path / "x.png"
    IMAGE.save(photo)
    rc = main(["predict", str(photo), "--output", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert "Traceback" not in err and words in lines[-1], err
    assert not (tmp_path / "out" / "coco").exists()
