"""The networks, one module per family, each implementing an interface of :mod:`lang_sam.models.base`.

- :mod:`lang_sam.models.base`: the engine seam (:class:`Detector`, :class:`Segmenter`,
  :class:`TextSegmenter`) and :func:`engine_for`, which loads the class a registry entry names;
- :mod:`lang_sam.models.detector`: :class:`GroundingDINODetector` (text -> boxes);
- :mod:`lang_sam.models.segmenter`: :class:`SamSegmenter` (boxes, points, masks -> masks);
- :mod:`lang_sam.models.sam2`: ``Sam2Segmenter``, SAM 2.1 on transformers' ``Sam2VideoModel``
  (images and video; imported only when a ``sam2.1_hiera_*`` model is loaded);
- :mod:`lang_sam.models.text_encoder`: the bundled BERT tokenizer and wrapper;
- :mod:`lang_sam.models.checkpoints`: matching a state dict to a network.

The (scoped) changes made to third-party code while building and running them are in
:mod:`lang_sam.patches`.

Importing this package imports torch but neither groundingdino nor segment_anything.
"""

from lang_sam.models.base import Detector, Engine, Segmenter, TextSegmenter, engine_for
from lang_sam.models.detector import GroundingDINODetector, ImageFeatures
from lang_sam.models.segmenter import SamSegmenter

__all__ = [
    "Engine", "Detector", "Segmenter", "TextSegmenter", "engine_for", "GroundingDINODetector",
    "ImageFeatures", "SamSegmenter",
]
