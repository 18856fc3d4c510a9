"""SAM 3 as the third engine (issue 16), on a tiny random SAM 3 folder (the real architecture,
transformers' Sam3Model) written by lang_sam.testing with CLIP's BPE vocabulary from open-clip-torch.

Kept out of the transformers-4 re-run of .ci/run (SAM 3 needs transformers 5); the error that
transformers 4 gives is tested here by hiding Sam3Model from the installed transformers.
"""

from __future__ import annotations

import json
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image
from fidelity_helpers import assert_masks_match
from lang_sam import LangSAM
from lang_sam.errors import (
    EngineUnavailableError,
    IgnoredArgumentWarning,
    InvalidArgumentError,
    LangSAMError,
    PromptTooLongError,
    UnsupportedPromptError,
)
from lang_sam.models.registry import get_spec
from lang_sam.models.base import ROLES, TextSegmenter, engine_for
from lang_sam.testing import write_sam3_folder
from lang_sam.tiling import TileSpec

#: How far the library's mask probabilities (all phrases in one batch) may be from transformers'
#: (one phrase per call): float32 rounding, 6e-8 at most measured (AVX-512 and AVX2 MKL kernels, 1 and
#: 2 threads).
SAM3_PROB_ATOL = 1e-6

pytest.importorskip("transformers.models.sam3", reason="SAM 3 needs transformers>=5")  # CI step 3 only


@pytest.fixture(scope="session")
def sam3_dir(tmp_path_factory) -> Path:
    return write_sam3_folder(tmp_path_factory.mktemp("sam3") / "sam3", "tiny", seed=0)


@pytest.fixture(scope="session")
def sam3(sam3_dir) -> LangSAM:
    return LangSAM(sam_type="sam3", ckpt_path=sam3_dir, device="cpu")


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    return Image.fromarray(make_image(90, 120, seed=5))


def reference(folder: Path, image: Image.Image, phrases, threshold: float):
    """transformers' own SAM 3 path, called directly: Sam3Model + Sam3Processor and its
    post_process_instance_segmentation, one phrase per call; results concatenated in order. Masks
    come as the probabilities that post-processing thresholds at 0.5 (checked against its masks)."""
    from transformers import Sam3Model, Sam3Processor

    model = Sam3Model.from_pretrained(folder).eval()
    proc = Sam3Processor.from_pretrained(folder)
    masks, boxes, scores, names = [], [], [], []
    for phrase in phrases:
        inputs = proc(images=image, text=phrase, return_tensors="pt")
        with torch.inference_mode():
            out = model(**inputs)
        r = proc.post_process_instance_segmentation(out, threshold=threshold,
                                                    target_sizes=inputs["original_sizes"].tolist())[0]
        keep = out.pred_logits[0].sigmoid() * out.presence_logits[0].sigmoid() > threshold
        probs = torch.nn.functional.interpolate(out.pred_masks[0][keep].sigmoid()[None], size=r["masks"].shape[-2:],
                                                mode="bilinear", align_corners=False)[0]
        assert torch.equal(probs > 0.5, r["masks"].bool())
        masks.append(probs)
        boxes.append(r["boxes"])
        scores.append(r["scores"])
        names += [phrase] * len(r["scores"])
    return torch.cat(masks), torch.cat(boxes), torch.cat(scores), names


def middle_threshold(folder, image, phrases) -> float:
    """A threshold that keeps about half of the tiny model's queries (its scores sit near 0.25)."""
    _, _, scores, _ = reference(folder, image, phrases, 0.0)
    return float(scores.median())


# ------------------------------------------------------------------------------------------
# The engine behind the 2023 API
# ------------------------------------------------------------------------------------------

def test_registry_and_roles_know_sam3_as_a_text_segmenter():
    spec = get_spec("sam", "sam3")
    assert spec.hf_repo == "facebook/sam3" and spec.gated and "config.json" in spec.files
    assert issubclass(engine_for(spec), TextSegmenter)
    assert TextSegmenter in ROLES["sam"]


def test_langsam_sam3_loads_no_groundingdino(sam3_dir, monkeypatch):
    from lang_sam.models import detector

    def refuse(*a, **k):
        raise AssertionError("GroundingDINO was loaded for sam_type='sam3'")

    monkeypatch.setattr(detector.GroundingDINODetector, "from_spec", classmethod(refuse))
    m = LangSAM(sam_type="sam3", ckpt_path=sam3_dir, device="cpu")
    assert m.groundingdino is None and m.detector is m.segmenter
    assert isinstance(m.segmenter, TextSegmenter)
    assert repr(m).startswith("LangSAM(sam_type='sam3', gdino_type=None, ")
    m.build_groundingdino(gdino_type="swint")  # recorded only: SAM 3 detects itself
    assert m.gdino_type == "swint" and m.detector is m.segmenter


@pytest.mark.parametrize("prompt, phrases", [
    ("cat", ["cat"]),
    ("wheel. car", ["wheel", "car"]),
    ("wheel. car. wheel.", ["wheel", "car"]),  # a repeated phrase is one query
])
def test_predict_equals_transformers_directly(sam3, sam3_dir, photo, prompt, phrases):
    """Same masks, boxes and scores as Sam3Model + post_process_instance_segmentation, although
    the library batches the phrases in one call on cached vision features."""
    t = middle_threshold(sam3_dir, photo, phrases)
    ref_probs, ref_boxes, ref_scores, ref_names = reference(sam3_dir, photo, phrases, t)
    sam3.clear_cache()
    masks, boxes, got_phrases, logits = sam3.predict(photo, prompt, box_threshold=t)
    assert 0 < len(got_phrases) == len(ref_names)
    assert got_phrases == ref_names
    assert masks.dtype == torch.bool and masks.shape == (len(ref_names), photo.height, photo.width)
    assert boxes.dtype == torch.float32 and logits.dtype == torch.float32
    torch.testing.assert_close(boxes, ref_boxes.float(), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(logits, ref_scores.float(), atol=1e-6, rtol=1e-5)
    # batching the phrases may move a mask probability by float rounding: a pixel that close to 0.5 may flip
    assert_masks_match(masks, ref_probs, eps=SAM3_PROB_ATOL, threshold=0.5)
    assert (logits > t).all()


def test_second_prompt_reuses_the_vision_encoding_and_equals_the_uncached_result(sam3, photo):
    calls = []
    hook = sam3.segmenter.model.vision_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        sam3.clear_cache()
        sam3.predict(photo, "cat", 0.0)
        first = sam3.predict(photo, "wheel. car", 0.0)  # same pixels: cached features
        assert len(calls) == 1  # the vision encoder ran once for two prompts
        sam3.clear_cache()
        uncached = sam3.predict(photo, "wheel. car", 0.0)
        assert len(calls) == 2
    finally:
        hook.remove()
    for a, b in zip(first, uncached):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
        else:
            assert a == b


def test_text_threshold_is_a_warned_no_op(sam3_dir, photo):
    m = LangSAM(sam_type="sam3", ckpt_path=sam3_dir, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        base = m.predict(photo, "cat", 0.0)  # the default text_threshold: no warning
    with pytest.warns(IgnoredArgumentWarning, match="text_threshold=0.9 is ignored by SAM 3"):
        other = m.predict(photo, "cat", 0.0, 0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.predict(photo, "cat", 0.0, 0.1)  # warned once per model
    assert torch.equal(base.masks, other.masks) and base.phrases == other.phrases


def test_nothing_found_gives_the_common_empty_result(sam3, photo):
    masks, boxes, phrases, logits = sam3.predict(photo, "cat", box_threshold=1.0)
    assert masks.shape == (0, photo.height, photo.width) and masks.dtype == torch.bool
    assert boxes.shape == (0, 4) and boxes.dtype == torch.float32
    assert phrases == [] and logits.shape == (0,) and logits.dtype == torch.float32


@pytest.mark.parametrize("call", ["segment_boxes", "segment_points", "predict_sam", "generate"])
def test_box_and_point_prompts_raise_a_typed_error(sam3, photo, call):
    """``generate`` (a grid of point prompts) raised a raw AttributeError (issue 25)."""
    with pytest.raises(UnsupportedPromptError) as info:
        if call == "segment_boxes":
            sam3.segment(photo, boxes=[10, 10, 50, 50])
        elif call == "segment_points":
            sam3.segment(photo, points=[[20, 20]])
        elif call == "generate":
            sam3.generate(photo, points_per_side=2)
        else:
            sam3.predict_sam(photo, torch.tensor([[10.0, 10, 50, 50]]))
    assert isinstance(info.value, TypeError) and info.value.engine == "sam3"
    assert "no box, point or mask prompt" in str(info.value) and "vit_h" in str(info.value)


@pytest.mark.parametrize("prompt, error", [("", "empty"), (". .", "empty"), ("cat " * 40, "42 tokens")])
def test_bad_prompts_fail_before_image_work(sam3, prompt, error):
    before = sam3.segmenter.vision_runs
    with pytest.raises(LangSAMError, match=error) as info:
        sam3.predict(make_image(20, 20), prompt)
    assert sam3.segmenter.vision_runs == before
    if "tokens" in error:
        assert isinstance(info.value, PromptTooLongError)


def test_predict_prompts_and_set_image(sam3, photo):
    sam3.set_image(photo)
    pinned = sam3.predict_prompt("cat", 0.0)
    direct = sam3.predict_prompts(photo, ["cat", "dog"], 0.0)
    assert torch.equal(pinned.masks, direct[0].masks) and direct[1].phrases == ["dog"] * 20


def test_tiled_with_one_tile_equals_predict_and_small_tiles_give_crops(sam3, photo):
    t = 0.0
    whole = sam3.predict(photo, "cat", t)
    tiled = sam3.predict(photo, "cat", t, tile=TileSpec(size=256, overlap=0.2))
    assert tiled.phrases == whole.phrases
    assert torch.equal(tiled.dense(), whole.masks) and torch.allclose(tiled.boxes, whole.boxes)
    small = sam3.predict(photo, "cat", 0.2505, tile=TileSpec(size=64, overlap=0.25))
    dense = small.dense()
    assert dense.shape == (len(small.phrases), photo.height, photo.width) and dense.dtype == torch.bool
    assert len(small.phrases) > 0 and (small.logits > 0.2505).all()


def test_transformers_without_sam3_gives_a_typed_error_naming_the_version(sam3_dir, monkeypatch):
    """What transformers 4.57 (CI's second run) gives: no Sam3Model there."""
    fake = types.ModuleType("transformers")
    fake.__version__ = "4.57.6"
    monkeypatch.setitem(sys.modules, "transformers", fake)
    with pytest.raises(EngineUnavailableError) as info:
        LangSAM(sam_type="sam3", ckpt_path=sam3_dir, device="cpu")
    err = info.value
    assert isinstance(err, ImportError) and err.installed == "4.57.6" and err.package == "transformers"
    assert "transformers>=5.0" in str(err) and "4.57.6" in str(err)


def test_a_folder_of_another_model_is_a_mismatch(sam3_dir, tmp_path):
    import shutil

    from lang_sam.errors import CheckpointMismatchError

    other = tmp_path / "other"
    shutil.copytree(sam3_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "sam2"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="'sam2' model"):
        LangSAM(sam_type="sam3", ckpt_path=other, device="cpu")


def test_unknown_engine_options_are_errors(sam3_dir):
    from lang_sam.models.sam3 import Sam3Segmenter

    with pytest.raises(InvalidArgumentError, match="no option"):
        Sam3Segmenter.from_spec(get_spec("sam", "sam3"), sam3_dir, chunk_bytes=3)


def test_importing_lang_sam_does_not_import_sam3():
    """SAM 3's code (transformers) is imported when a SAM 3 model is loaded, never with lang_sam;
    lang_sam.models.sam3 itself is, since it declares the family's registry entry (it imports
    no transformers at module level)."""
    import subprocess

    code = ("import sys, lang_sam; from lang_sam import LangSAM; "
            "print(any(m == 'transformers' or m.startswith('transformers.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_testing_cli_writes_a_loadable_tiny_sam3_folder(tmp_path, capsys):
    from lang_sam.models.sam3 import SAM3_FILES
    from lang_sam.testing import main as testing_main

    testing_main(["--to", str(tmp_path), "--sam3", "tiny"])
    folder = tmp_path / "sam3"
    assert sorted(p.name for p in folder.iterdir()) == sorted(SAM3_FILES)
    assert "SAM 3 (tiny): wrote" in capsys.readouterr().err
    tok = json.loads((folder / "tokenizer.json").read_text())
    assert len(tok["model"]["vocab"]) == 49408  # CLIP's vocabulary, from open-clip-torch's BPE file
    m = LangSAM(sam_type="sam3", ckpt_path=folder, device="cpu")
    assert m.segmenter.processor.tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
