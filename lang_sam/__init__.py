"""lang-sam: segment objects in images from a text prompt (GroundingDINO + Segment Anything).

>>> from lang_sam import LangSAM
>>> masks, boxes, phrases, logits = LangSAM().predict(image, "car. wheel")  # doctest: +SKIP

Importing this package builds no model, probes no device and touches no network.
"""

from lang_sam import errors as _errors
from lang_sam.errors import *  # noqa: F401,F403 - the typed errors, listed in errors.__all__
from lang_sam.hub import GDINO_MODELS, SAM_MODELS
from lang_sam.engines import EncodedImage
from lang_sam.lang_sam import LangSAM
from lang_sam.masks import CropMask
from lang_sam.generate import GenerateSettings
from lang_sam.results import (
    Detections, GeneratedMasks, MaskPrediction, Prediction, TiledPrediction, TrackedFrame,
)
from lang_sam.tiling import TileSpec

try:  # the version is written once, in pyproject.toml; the installed metadata carries it
    from importlib.metadata import PackageNotFoundError as _NotInstalled, version as _version

    __version__: str = _version("lang-sam")
except _NotInstalled:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = [
    "LangSAM", "Prediction", "EncodedImage", "MaskPrediction", "TileSpec", "TiledPrediction",
    "Detections", "CropMask", "TrackedFrame", "SAM_MODELS", "GDINO_MODELS", "GeneratedMasks", "GenerateSettings",
    "__version__", *_errors.__all__,
]
