"""Labelling datasets: classes, formats, atomic writes, and the pipeline that runs them.

- :mod:`lang_sam.labeling.classes`: :class:`ClassMap` (phrases -> stable class names and ids),
  :func:`class_nms`;
- :mod:`lang_sam.labeling.formats`: COCO (RLE), LabelMe, YOLO, mask and overlay PNG writers;
  :mod:`lang_sam.labeling.labelstudio`, :mod:`lang_sam.labeling.cvat` (with
  :mod:`lang_sam.labeling.tool_formats`): what Label Studio and CVAT import;
- :mod:`lang_sam.labeling.atomic`: write to a temporary name, then rename;
- :mod:`lang_sam.labeling.folder_run` (with :mod:`lang_sam.labeling.inputs`): the one folder run
  of every input kind (collect, lock, resume, failure policy, summary);
- :mod:`lang_sam.labeling.run`: images on it (:func:`collect_images`, :func:`label_image`,
  :class:`LabelRun`, :func:`label_folder`) for ``lang-sam predict``, the examples and Ray;
  :mod:`lang_sam.labeling.video_run`: videos on it (``lang-sam track``).
"""

from lang_sam.labeling.atomic import atomic_write_bytes, atomic_write_text, write_json, write_png
from lang_sam.labeling.classes import ClassMap, class_nms, normalize_phrase
from lang_sam.labeling.formats import (
    CocoBuilder,
    coco_image_record,
    detection_labels,
    labelme_dict,
    mask_to_rle,
    masks_to_rle,
    rle_to_mask,
    write_instance_masks,
    write_overlay,
    yolo_data_yaml,
    yolo_lines,
)
from lang_sam.labeling.run import (
    DEFAULT_FORMATS,
    FORMATS,
    IMAGE_EXTENSIONS,
    ImageItem,
    ImageLabels,
    LabelRun,
    LabelSettings,
    RunSummary,
    collect_images,
    label_folder,
    label_image,
    parse_formats,
)

__all__ = [
    "ClassMap", "class_nms", "normalize_phrase",
    "CocoBuilder", "coco_image_record", "detection_labels", "labelme_dict", "mask_to_rle",
    "masks_to_rle", "rle_to_mask", "write_instance_masks", "write_overlay", "yolo_data_yaml",
    "yolo_lines",
    "atomic_write_bytes", "atomic_write_text", "write_json", "write_png",
    "IMAGE_EXTENSIONS", "FORMATS", "DEFAULT_FORMATS", "ImageItem", "ImageLabels", "LabelRun",
    "LabelSettings", "RunSummary", "collect_images", "label_folder", "label_image", "parse_formats",
]
