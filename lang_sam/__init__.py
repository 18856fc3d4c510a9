"""lang-sam: segment objects in images from a text prompt (GroundingDINO + Segment Anything).

>>> from lang_sam import LangSAM
>>> masks, boxes, phrases, logits = LangSAM().predict(image, "car. wheel")  # doctest: +SKIP

Importing this package builds no model, probes no device and touches no network.
"""

from lang_sam.errors import (
    CheckpointError,
    CheckpointMismatchError,
    ChecksumMismatchError,
    DownloadError,
    ImageNotFoundError,
    InvalidClassMapError,
    InvalidImageError,
    InvalidPromptError,
    InvalidThresholdError,
    LangSAMError,
    PromptTooLongError,
    UnknownModelError,
    UnsafeCheckpointError,
    WeightsNotFoundError,
)
from lang_sam.lang_sam import LangSAM, Prediction
from lang_sam.weights import GDINO_MODELS, SAM_MODELS

__version__ = "0.1.0"

__all__ = [
    "LangSAM",
    "Prediction",
    "SAM_MODELS",
    "GDINO_MODELS",
    "LangSAMError",
    "UnknownModelError",
    "CheckpointError",
    "CheckpointMismatchError",
    "UnsafeCheckpointError",
    "ChecksumMismatchError",
    "WeightsNotFoundError",
    "DownloadError",
    "InvalidImageError",
    "ImageNotFoundError",
    "InvalidPromptError",
    "PromptTooLongError",
    "InvalidThresholdError",
    "InvalidClassMapError",
    "__version__",
]
