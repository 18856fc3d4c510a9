"""Issue 14, items 1, 2 and 4: one pipeline that every entry point runs, an engine seam a new model
family plugs into without editing lang_sam, and result types that check themselves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fidelity_helpers import SAM_LOGIT_ATOL, assert_masks_match, sam_mask_logits
from lang_sam import Detections, LangSAM, MaskPrediction, Prediction, TiledPrediction, TileSpec, pipeline
from lang_sam.engines import Engines
from lang_sam.errors import InvalidArgumentError, InvalidResultError
from lang_sam.hub import ModelSpec
from lang_sam.models.registry import register_model, unregister_model
from lang_sam.labeling.run import LabelSettings, label_folder
from lang_sam.masks import CropMask
from lang_sam.models.base import engine_for
from lang_sam.serving.service import ModelService
from plugin_engines import BoxFill, BoxFillArch, expected_mask


@pytest.fixture
def runs(monkeypatch):
    """Every call of lang_sam.pipeline.run, as (select steps, tiled) pairs."""
    calls = []
    real = pipeline.run

    def spy(*args, **kwargs):
        calls.append((len(kwargs.get("select", ())), kwargs.get("tile") is not None))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "run", spy)
    return calls


@pytest.mark.slow
def test_every_text_entry_point_runs_the_one_pipeline(runs, model, image, tiny_specs, sam_ckpt,
                                                       gdino_ckpt, tmp_path):
    """predict (and its variants, tiled or not), label_folder (tiled or not) and the server all go
    through lang_sam.pipeline.run; label_dataset's workers call label_image, tested in test_ray."""
    model.predict(image, "car", 0.0, 0.0)
    model.predict_prompts(image, ["car", "wheel"], 0.0, 0.0)
    model.set_image(image)
    model.predict_prompt("car", 0.0, 0.0)
    model.predict_batch([image], "car", 0.0, 0.0)
    assert runs == [(0, False)] * 5
    runs.clear()
    model.predict(image, "car", 0.0, 0.0, tile=TileSpec(160))
    assert runs == [(1, True)]  # merge_tiles
    runs.clear()
    Image.fromarray(np.asarray(image)).save(tmp_path / "a.png")
    for tile in (None, TileSpec(160)):
        settings = LabelSettings.create("car", box_threshold=0.0, text_threshold=0.0, tile=tile, nms=0.5)
        label_folder(model, [tmp_path / "a.png"], tmp_path / f"out-{tile is None}", settings, ["coco"])
    assert runs == [(3, False), (4, True)]  # classes, NMS, the many-boxes warning (+ merge_tiles)
    runs.clear()
    service = ModelService(sam_type=tiny_specs[0].name, gdino_type=tiny_specs[1].name,
                           sam_ckpt=str(sam_ckpt), gdino_ckpt=str(gdino_ckpt), device="cpu", max_detections=3)
    served = service.predict(image, "car", 0.0, 0.0)
    assert runs == [(2, False)] and len(served.phrases) <= 3  # the count, top_k


@pytest.mark.slow
def test_the_servers_top_k_is_a_select_step(model, image):
    full = model.predict(image, "car", 0.0, 0.0)
    assert len(full.phrases) > 3, "the tiny models found too little to test"
    out = pipeline.run(model.engines, image, "car", 0.0, 0.0, select=[pipeline.top_k(3)])
    keep = torch.argsort(full.logits, descending=True, stable=True)[:3].sort().values
    assert torch.equal(out.detections.boxes, full.boxes[keep])
    # SAM decodes the 3 boxes together where predict decoded them among all: another batch size,
    # another kernel on some CPUs, so float32 rounding (fidelity_helpers.SAM_LOGIT_ATOL)
    logits = sam_mask_logits(model, image, full.boxes)
    assert torch.equal(logits > 0, full.masks)
    assert_masks_match(out.masks, logits[keep], eps=SAM_LOGIT_ATOL, what="top_k's masks")
    assert out.detections.phrases == [full.phrases[i] for i in keep.tolist()]


@pytest.mark.slow
def test_crop_masks_equal_dense_masks(model, image):
    dense = pipeline.run(model.engines, image, "car", 0.0, 0.0)
    crops = pipeline.run(model.engines, image, "car", 0.0, 0.0, collect=pipeline.CropMasks)
    assert all(isinstance(m, CropMask) for m in crops.masks) and len(crops.masks) == len(dense.masks)
    assert all(np.array_equal(c.to_dense(), d.numpy()) for c, d in zip(crops.masks, dense.masks))
    assert torch.equal(crops.iou_scores, dense.iou_scores)


@pytest.fixture(scope="module")
def bare_engines(tiny_specs, sam_ckpt, gdino_ckpt):
    """The tiny detector and segmenter loaded from their registry entries, with no LangSAM."""
    sam, gdino = tiny_specs
    return Engines(engine_for(gdino).from_spec(gdino, gdino_ckpt, "cpu"),
                   engine_for(sam).from_spec(sam, sam_ckpt, "cpu", fast_attention=True))


@pytest.mark.slow
def test_the_pipeline_runs_engines_built_without_the_facade(bare_engines, model, image):
    """Issue 26, item 1: run / detect / segment take an Engines, nothing of LangSAM's."""
    want = model.predict(image, "car", 0.0, 0.0)
    assert len(want.phrases) > 3, "the tiny models found too little to test"
    out = pipeline.run(bare_engines, image, "car", 0.0, 0.0)
    assert torch.equal(out.masks, want.masks) and torch.equal(out.detections.boxes, want.boxes)
    assert out.detections.phrases == want.phrases and torch.equal(out.iou_scores, want.iou_scores)
    det, enc = pipeline.detect(bare_engines, image, bare_engines.prepare("car", 0.0, 0.0))
    assert enc is not None and torch.equal(det.boxes, want.boxes) and torch.equal(det.scores, want.logits)
    masks, iou = pipeline.segment(bare_engines, enc, det)  # the encoded image: no second encoding
    assert torch.equal(masks, want.masks) and torch.equal(iou, want.iou_scores)
    masks, iou = pipeline.segment(bare_engines, enc, det.boxes)  # boxes alone, as predict_sam gives them
    assert torch.equal(masks, want.masks) and torch.equal(iou, want.iou_scores)


# ------------------------------------------------------------------------------------------
# The engine seam: a family lang_sam does not know, added as one module plus a registry entry
# ------------------------------------------------------------------------------------------

@pytest.fixture
def box_fill(tmp_path):
    spec = register_model(ModelSpec("sam", "box_fill", "box_fill.pth", BoxFillArch(),
                                    engine="plugin_engines:BoxFill"))
    path = tmp_path / "box_fill.pth"
    torch.save({"inset": torch.tensor(2)}, path)
    yield spec, path
    unregister_model("sam", spec.name)


@pytest.mark.slow
def test_a_new_segmenter_family_runs_everywhere_without_editing_lang_sam(box_fill, tiny_specs, gdino_ckpt,
                                                                         image, tmp_path):
    spec, path = box_fill
    m = LangSAM(spec.name, str(path), gdino_type=tiny_specs[1].name, gdino_ckpt_path=str(gdino_ckpt),
                device="cpu")
    assert isinstance(m.segmenter, BoxFill) and m.segmenter.arch == BoxFillArch(inset=2)
    masks, boxes, phrases, logits = m.predict(image, "car", 0.0, 0.0)
    assert len(phrases) > 3, "the tiny detector found too little to test"
    H, W = masks.shape[1:]
    assert all(np.array_equal(mask.numpy(), expected_mask(b, (H, W), 2)) for mask, b in zip(masks, boxes))
    tiled = m.predict(image, "car", 0.0, 0.0, tile=TileSpec(160))
    assert all(np.array_equal(c.to_dense(), expected_mask(b, (H, W), 2)) for c, b in zip(tiled.masks, tiled.boxes))
    # Labelling writes the family's masks: COCO areas are those of the filled boxes.
    Image.fromarray(np.asarray(image)).save(tmp_path / "a.png")
    settings = LabelSettings.create("car", box_threshold=0.0, text_threshold=0.0, sam_type=spec.name,
                                    gdino_type=tiny_specs[1].name)
    label_folder(m, [tmp_path / "a.png"], tmp_path / "out", settings, ["coco"])
    coco = json.loads((tmp_path / "out" / "coco" / "annotations.json").read_text())
    areas = sorted(a["area"] for a in coco["annotations"])
    assert areas == sorted(int(expected_mask(b, (H, W), 2).sum()) for b in boxes)


@pytest.mark.parametrize("engine, problem", [
    ("plugin_engines:Nowhere", "cannot be imported"),
    ("no_such_module:BoxFill", "cannot be imported"),
    ("plugin_engines:BoxFillArch", "is not a lang_sam.models.base.Segmenter"),
    ("lang_sam.models.detector:GroundingDINODetector", "is not a lang_sam.models.base.Segmenter"),
])
def test_a_registry_entry_naming_a_wrong_engine_is_a_clear_error(engine, problem, tmp_path, tiny_specs,
                                                                gdino_ckpt):
    spec = register_model(ModelSpec("sam", "wrong_engine", "w.pth", BoxFillArch(), engine=engine))
    try:
        torch.save({"inset": torch.tensor(0)}, tmp_path / "w.pth")
        with pytest.raises(InvalidArgumentError, match=problem) as e:
            LangSAM("wrong_engine", str(tmp_path / "w.pth"), gdino_type=tiny_specs[1].name,
                    gdino_ckpt_path=str(gdino_ckpt), device="cpu")
        assert engine in str(e.value)
    finally:
        unregister_model("sam", spec.name)


#: Every engine class lang_sam registers, and the test's plugin engines, with the capability
#: questions' answers: (takes_boxes, segments_text, can_track, tracks_text). A registered engine
#: missing here fails test_every_registered_engine_is_in_the_capability_table.
CAPABILITIES = {
    "lang_sam.models.segmenter:SamSegmenter": (True, False, False, False),  # SAM v1
    "lang_sam.models.sam2:Sam2Segmenter": (True, False, True, False),  # SAM 2.1
    "lang_sam.models.sam3:Sam3Segmenter": (False, True, True, True),  # SAM 3
    "lang_sam.models.detector:GroundingDINODetector": (False, False, False, False),
    "plugin_engines:BoxFill": (True, False, False, False),
    "plugin_engines:BoxFillVideo": (True, False, True, False),
    "plugin_engines:ColorDetector": (False, False, False, False),
}


def _engine_class(engine: str):
    import importlib

    module, _, name = engine.partition(":")
    return getattr(importlib.import_module(module), name)


def test_every_registered_engine_is_in_the_capability_table():
    from lang_sam.models.registry import registered_specs

    engines = {spec.engine for family in ("sam", "gdino") for spec in registered_specs(family)}
    assert engines - set(CAPABILITIES) == set()


@pytest.mark.parametrize("engine", sorted(CAPABILITIES))
def test_engines_answer_the_capability_questions(engine):
    """On the class (before weights are loaded: ``video_types``) as the table says; a segmenter
    (a ``sam`` engine, box or text) has an int ``mask_input_size``, 256 unless its weights say less."""
    from lang_sam.models.base import ROLES

    cls = _engine_class(engine)
    got = (cls.takes_boxes, cls.segments_text, cls.can_track, cls.tracks_text)
    assert got == CAPABILITIES[engine] and all(type(v) is bool for v in got)
    if issubclass(cls, ROLES["sam"]):
        assert cls.mask_input_size == 256
    else:
        assert not hasattr(cls, "mask_input_size")


def test_an_engine_answers_as_its_class(model):
    """An instance answers as its class; a tiny SAM's mask-input size is its prompt encoder's."""
    box_fill = BoxFill(BoxFillArch())
    assert (box_fill.takes_boxes, box_fill.segments_text, box_fill.can_track) == (True, False, False)
    seg = model.segmenter
    assert (seg.takes_boxes, seg.segments_text, seg.can_track, seg.tracks_text) == (True, False, False, False)
    assert seg.mask_input_size == seg.predictor.model.prompt_encoder.mask_input_size[0] < 256
    assert (model.detector.takes_boxes, model.detector.segments_text) == (False, False)


def test_the_default_tracking_engine_can_track():
    from lang_sam.models.registry import DEFAULT_SAM, DEFAULT_TRACK_SAM, get_spec
    from lang_sam.models.base import engine_for

    assert engine_for(get_spec("sam", DEFAULT_TRACK_SAM)).can_track
    assert not engine_for(get_spec("sam", DEFAULT_SAM)).can_track


def test_registry_entries_name_their_engines():
    from lang_sam.models.registry import get_spec
    from lang_sam.models import GroundingDINODetector, SamSegmenter, engine_for

    assert engine_for(get_spec("sam", "vit_b")) is SamSegmenter
    assert engine_for(get_spec("gdino", "swint")) is GroundingDINODetector


# ------------------------------------------------------------------------------------------
# Results check themselves
# ------------------------------------------------------------------------------------------

B2 = torch.zeros((2, 4))
M2 = torch.zeros((2, 5, 6), dtype=torch.bool)
S2 = torch.zeros(2)
CROP = CropMask(np.ones((1, 1), bool), 0, 0, (5, 6))


@pytest.mark.parametrize("build, field", [
    (lambda: Prediction(M2, B2, ["a"], S2), "phrases"),
    (lambda: Prediction(M2, torch.zeros((2, 5)), ["a", "b"], S2), "boxes"),
    (lambda: Prediction(M2, B2, ["a", "b"], torch.zeros(3)), "logits"),
    (lambda: Prediction(M2.float(), B2, ["a", "b"], S2), "masks"),
    (lambda: Prediction(M2[:1], B2, ["a", "b"], S2), "masks"),
    (lambda: Prediction(M2, B2, ["a", "b"], S2, iou_scores=torch.zeros(1)), "iou_scores"),
    (lambda: Prediction(M2, B2.numpy(), ["a", "b"], S2), "boxes"),
    (lambda: Prediction(M2, B2, ["a", 2], S2), "phrases"),
    (lambda: Prediction(M2, B2, "ab", S2), "phrases"),
    (lambda: TiledPrediction([CROP], B2, ["a", "b"], S2, image_size=(5, 6)), "masks"),
    (lambda: TiledPrediction([CROP, CROP], B2, ["a", "b"], S2, image_size=(6, 5)), "masks[0]"),
    (lambda: TiledPrediction([CROP, M2[0]], B2, ["a", "b"], S2, image_size=(5, 6)), "masks[1]"),
    (lambda: TiledPrediction([CROP, CROP], B2, ["a", "b"], S2, image_size=(5, -6)), "image_size"),
    (lambda: Detections(B2, torch.zeros(1), ["a", "b"], (5, 6)), "scores"),
    (lambda: Detections(B2, S2, ["a", "b"], (5, 6), tile_index=S2), "tile_index"),
    (lambda: Detections(B2, S2, ["a", "b"], "5x6"), "image_size"),
    (lambda: MaskPrediction(M2[:, None], torch.zeros((2, 3))), "iou_scores"),
    (lambda: MaskPrediction(M2, torch.zeros((2, 1))), "masks"),
    (lambda: MaskPrediction(M2[:, None], torch.zeros((2, 1)), torch.zeros((2, 3, 256, 256))), "low_res_logits"),
])
def test_results_check_their_fields_when_built(build, field):
    with pytest.raises(InvalidResultError) as e:
        build()
    assert e.value.field == field and isinstance(e.value, ValueError)
    assert e.value.expected in str(e.value) and e.value.got in str(e.value)


@pytest.mark.slow
def test_both_predictions_unpack_as_the_2023_four_tuple(model, image):
    plain = model.predict(image, "car", 0.0, 0.0)
    tiled = model.predict(image, "car", 0.0, 0.0, tile=TileSpec(10_000))
    for result in (plain, tiled):
        masks, boxes, phrases, logits = result
        assert (boxes, phrases, logits) == (result.boxes, result.phrases, result.logits)
        assert result.scores is result.logits and result.image_size == tuple(plain.masks.shape[1:])
    assert torch.equal(tiled.boxes, plain.boxes) and torch.equal(tiled.dense(), plain.masks)


def test_results_survive_pickle_and_copy():
    import copy
    import pickle

    crop = CropMask(np.ones((1, 1), bool), 0, 0, (5, 6))
    results = [
        Prediction(M2, B2, ["a", "b"], S2, iou_scores=torch.ones(2)),
        TiledPrediction([crop, crop], B2, ["a", "b"], S2, iou_scores=torch.ones(2), image_size=(5, 6),
                        tiles=[(0, 0, 6, 5)]),
        Detections(B2, S2, ["a", "b"], (5, 6), tile_index=torch.zeros(2, dtype=torch.int64), tiles=[(0, 0, 6, 5)]),
        MaskPrediction(M2[:, None], torch.zeros((2, 1))),
    ]
    for r in results:
        for twin in (pickle.loads(pickle.dumps(r)), copy.deepcopy(r)):
            assert type(twin) is type(r) and repr(twin) == repr(r)
            for name in ("iou_scores", "image_size", "tiles", "tile_index"):
                a, b = getattr(r, name, None), getattr(twin, name, None)
                assert (torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b), name
