"""The networks: GroundingDINO (text -> boxes) and SAM (prompts -> masks), loaded from checkpoints.

- :mod:`lang_sam.models.detector`: :class:`GroundingDINODetector`;
- :mod:`lang_sam.models.segmenter`: :class:`SamSegmenter`;
- :mod:`lang_sam.models.text_encoder`: the bundled BERT tokenizer and wrapper;
- :mod:`lang_sam.models.checkpoints`: matching a state dict to a network.

The (scoped) changes made to third-party code while building and running them are in
:mod:`lang_sam.patches`.

Importing this package imports torch but neither groundingdino nor segment_anything.
"""

from lang_sam.models.detector import Detections, GroundingDINODetector, ImageFeatures
from lang_sam.models.segmenter import MaskPrediction, SamSegmenter

__all__ = ["GroundingDINODetector", "Detections", "ImageFeatures", "SamSegmenter", "MaskPrediction"]
