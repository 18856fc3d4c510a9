"""Imports of the 0.1 layout keep working after the move to hub/, models/, labeling/ and serving/:
every name each old module listed in ``__all__`` is still importable from it, and is the same
object as in its new home."""

from __future__ import annotations

import importlib

import pytest

# module -> its __all__ before the layered layout (commit 4ee64ce), and where the names live now
OLD_API = {
    "lang_sam.weights": (
        ["SamArch", "GDinoArch", "ModelSpec", "SAM_MODELS", "GDINO_MODELS", "DEFAULT_SAM",
         "DEFAULT_GDINO", "get_spec", "register_model", "unregister_model", "is_offline",
         "weights_dir", "download_dir", "candidate_paths", "resolve_checkpoint", "download_file",
         "sha256sum", "load_checkpoint", "ENV_WEIGHTS_DIR", "ENV_OFFLINE", "ENV_TRUST"],
        "lang_sam.hub"),
    "lang_sam.exports": (
        ["TMP_SUFFIX", "ClassMap", "normalize_phrase", "class_nms", "atomic_write_bytes",
         "atomic_write_text", "write_json", "write_png", "mask_to_rle", "rle_to_mask",
         "coco_image_record", "CocoBuilder", "labelme_dict", "largest_polygon", "yolo_lines",
         "yolo_data_yaml", "write_instance_masks", "write_overlay", "safe_name"],
        None),
    "lang_sam.detector": (
        ["Detections", "ImageFeatures", "GroundingDINODetector", "build_groundingdino_model",
         "preprocess_caption"], "lang_sam.models.detector"),
    "lang_sam.segmenter": (["SamSegmenter", "build_sam_model"], "lang_sam.models.segmenter"),
    "lang_sam.text_encoder": (["BERT_DIR", "BertTextEncoder", "load_tokenizer", "build_bert"],
                              "lang_sam.models.text_encoder"),
    "lang_sam.service": (["ModelService"], "lang_sam.serving.service"),
    "lang_sam.server": (["create_app", "main", "masks_to_rle", "DEFAULT_MAX_PIXELS",
                         "MAX_PROMPT_CHARS"], "lang_sam.serving.server"),
    "lang_sam.app": (["build_demo", "main"], "lang_sam.serving.app"),
    "lang_sam.cli": (["main", "IMAGE_EXTENSIONS", "FORMATS", "DEFAULT_FORMATS", "collect_images"],
                     None),
}


@pytest.mark.parametrize("module", sorted(OLD_API))
def test_old_import_paths_still_work(module):
    names, new_home = OLD_API[module]
    old = importlib.import_module(module)
    missing = [n for n in names if not hasattr(old, n)]
    assert not missing, f"{module} lost {missing}"
    if new_home is not None:
        new = importlib.import_module(new_home)
        for n in names:
            assert getattr(old, n) is getattr(new, n), f"{module}.{n} is not {new_home}.{n}"


def test_old_from_imports():
    from lang_sam.exports import ClassMap, CocoBuilder, mask_to_rle  # noqa: F401
    from lang_sam.labeling import ClassMap as NewClassMap
    from lang_sam.weights import get_spec

    assert ClassMap is NewClassMap
    assert get_spec("sam", "vit_b").filename == "sam_vit_b_01ec64.pth"
