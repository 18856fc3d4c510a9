"""The networks, one module per family, each implementing an interface of :mod:`lang_sam.models.base`.

- :mod:`lang_sam.models.registry`: the model registry, which collects the entries (``SPECS``) each
  family module declares (done here, on import) and names the defaults;
- :mod:`lang_sam.models.base`: the engine seam (:class:`Detector`, :class:`Segmenter`,
  :class:`TextSegmenter`) and :func:`engine_for`, which loads the class a registry entry names;
- :mod:`lang_sam.models.detector`: :class:`GroundingDINODetector` (text -> boxes);
- :mod:`lang_sam.models.segmenter`: :class:`SamSegmenter` (boxes, points, masks -> masks);
- :mod:`lang_sam.models.sam2`: ``Sam2Segmenter``, SAM 2.1 on transformers' ``Sam2VideoModel``
  (images and video; transformers' SAM 2 is imported only when a ``sam2.1_hiera_*`` model is loaded);
- :mod:`lang_sam.models.sam3`: ``Sam3Segmenter``, SAM 3 (text -> masks) on transformers;
- :mod:`lang_sam.models.text_encoder`: the bundled BERT tokenizer and wrapper;
- :mod:`lang_sam.models.checkpoints`: matching a state dict to a network.

The (scoped) changes made to third-party code while building and running them are in
:mod:`lang_sam.patches`.

Each family module (``segmenter``, ``sam2``, ``sam3``, ``detector``) declares its architecture
record, its registry entries (``SPECS``) and its random-weight checkpoint writer; importing this
package registers the entries, in that order. It imports torch but neither groundingdino,
segment_anything nor transformers' model classes.
"""

from lang_sam.models import detector, sam2, sam3, segmenter
from lang_sam.models.base import Detector, Engine, Segmenter, TextSegmenter, engine_for
from lang_sam.models.detector import GroundingDINODetector, ImageFeatures
from lang_sam.models.registry import register_model
from lang_sam.models.segmenter import SamSegmenter

for _spec in (*segmenter.SPECS, *sam2.SPECS, *sam3.SPECS, *detector.SPECS):
    register_model(_spec)

__all__ = [
    "Engine", "Detector", "Segmenter", "TextSegmenter", "engine_for", "GroundingDINODetector",
    "ImageFeatures", "SamSegmenter",
]
