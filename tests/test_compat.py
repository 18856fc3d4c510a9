"""The one compatibility promise is the 2023 surface: ``lang_sam`` (``LangSAM``, ``SAM_MODELS``) and
``lang_sam.utils``. Modules of a layout of ours that was never released are not kept as re-exports
(issue 14: eight such shims existed, only the tests imported them)."""

from __future__ import annotations

import importlib
import inspect

import pytest

import lang_sam
from lang_sam import utils

SURFACE_2023 = {
    "lang_sam": ["LangSAM", "SAM_MODELS"],
    "lang_sam.utils": ["load_image", "draw_image", "get_contours", "contour_to_points", "generate_labelme_json"],
}
LANGSAM_METHODS = ["predict", "predict_dino", "predict_sam", "build_sam"]


@pytest.mark.parametrize("module", sorted(SURFACE_2023))
def test_the_2023_names_are_there(module):
    mod = importlib.import_module(module)
    assert [n for n in SURFACE_2023[module] if not hasattr(mod, n)] == []


def test_the_2023_signatures():
    params = inspect.signature(lang_sam.LangSAM).parameters
    assert list(params)[:3] == ["sam_type", "ckpt_path", "return_prompts"]
    assert (params["sam_type"].default, params["ckpt_path"].default, params["return_prompts"].default) == \
        ("vit_h", None, False)
    assert all(callable(getattr(lang_sam.LangSAM, m)) for m in LANGSAM_METHODS)
    predict = inspect.signature(lang_sam.LangSAM.predict).parameters
    assert (predict["box_threshold"].default, predict["text_threshold"].default) == (0.3, 0.25)
    assert set(lang_sam.SAM_MODELS) >= {"vit_h", "vit_l", "vit_b"}
    assert callable(utils.load_image)


@pytest.mark.parametrize("module", ["lang_sam.weights", "lang_sam.exports", "lang_sam.detector",
                                    "lang_sam.segmenter", "lang_sam.text_encoder", "lang_sam.service",
                                    "lang_sam.server", "lang_sam.app"])
def test_the_unreleased_layouts_shims_are_gone(module):
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(module)


def test_the_cli_module_holds_no_borrowed_names():
    import lang_sam.cli

    assert not hasattr(lang_sam.cli, "__getattr__") and not hasattr(lang_sam.cli, "collect_images")
