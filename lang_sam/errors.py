"""Typed errors raised by lang-sam.

Every error subclasses :class:`LangSAMError` (catch-all for the library) *and* the built-in
exception a caller would naturally catch (``ValueError``, ``FileNotFoundError``,
``ConnectionError``), so existing ``except ValueError:`` code keeps working.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "LangSAMError",
    "UnknownModelError",
    "CheckpointError",
    "CheckpointMismatchError",
    "UnsafeCheckpointError",
    "ChecksumMismatchError",
    "WeightsNotFoundError",
    "DownloadError",
    "MissingWeightsError",
    "MissingWeight",
    "InvalidImageError",
    "ImageTooLargeError",
    "ImageNotFoundError",
    "InvalidPromptError",
    "PromptTooLongError",
    "InvalidThresholdError",
    "InvalidClassMapError",
    "InvalidRunError",
    "DeviceError",
    "InvalidTileError",
    "RayNotInstalledError",
    "RayJobError",
]


class LangSAMError(Exception):
    """Base class of every error raised on purpose by lang-sam."""


class UnknownModelError(LangSAMError, ValueError):
    """A model type that is not in the registry (``sam_type="vit_x"``)."""


class CheckpointError(LangSAMError, ValueError):
    """A checkpoint file that cannot be used (unreadable, wrong keys, wrong shapes)."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose architecture does not match the requested model type."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that needs arbitrary unpickling and is not one of the official files."""


class ChecksumMismatchError(LangSAMError, ValueError):
    """A downloaded file whose sha256 differs from the registry's. The file is removed."""


class WeightsNotFoundError(LangSAMError, FileNotFoundError):
    """A checkpoint that is not on disk and may not (offline mode) or could not be fetched."""

    #: Why, in one line and without the advice (set by :mod:`lang_sam.hub`; None if unset).
    reason: str | None = None


class DownloadError(LangSAMError, ConnectionError):
    """Every source of a checkpoint failed to deliver it."""

    #: Each source's failure, in one line and without the advice (set by :mod:`lang_sam.hub`).
    reason: str | None = None


class MissingWeight(NamedTuple):
    """One checkpoint a :class:`MissingWeightsError` reports: ``family`` (``"sam"``/``"gdino"``),
    type ``name``, canonical ``filename``, and ``reason`` it is missing (one line)."""

    family: str
    name: str
    filename: str
    reason: str


class MissingWeightsError(WeightsNotFoundError, DownloadError):
    """Checkpoints that a model needs and that are neither on disk nor could be fetched.

    ``missing`` holds a :class:`MissingWeight` for every one of them (SAM's and GroundingDINO's
    both, not only the first found missing); the message lists them and the ways to provide them.
    It is a :class:`WeightsNotFoundError` (``FileNotFoundError``) and a :class:`DownloadError`
    (``ConnectionError``), so code that catches either keeps working.
    """

    def __init__(self, message: str, missing=()):
        super().__init__(message)
        self.missing: tuple[MissingWeight, ...] = tuple(missing)

    def __reduce__(self):  # picklable (Ray sends errors between processes)
        return (type(self), (str(self), self.missing))

    @property
    def filenames(self) -> list[str]:
        """The missing files' canonical names, in the order the model loads them."""
        return [m.filename for m in self.missing]


class InvalidImageError(LangSAMError, ValueError):
    """An image that cannot be read or has an unsupported shape, dtype or size."""


class ImageTooLargeError(InvalidImageError):
    """An image over the pixel limit (``LANG_SAM_MAX_IMAGE_PIXELS``), refused before decoding."""


class ImageNotFoundError(LangSAMError, FileNotFoundError):
    """An image path that does not exist."""


class InvalidPromptError(LangSAMError, ValueError):
    """A prompt that cannot be used: an empty or non-string text prompt, or SAM boxes, points,
    labels or masks of the wrong shape or outside the image."""


class PromptTooLongError(InvalidPromptError):
    """A prompt longer than GroundingDINO's 256-token window (never truncated silently)."""


class InvalidThresholdError(LangSAMError, ValueError):
    """A box or text threshold outside [0, 1]."""


class InvalidClassMapError(LangSAMError, ValueError):
    """A class mapping spec that cannot be parsed (``"car=car. automobile"`` is the expected form)."""


class InvalidRunError(LangSAMError, ValueError):
    """A labelling run that cannot start as asked: a missing input, no image, two images that would
    write the same outputs, an output path that is not a folder, or ``resume`` with other settings."""


class DeviceError(LangSAMError, ValueError):
    """A device that is not a device name (``"gpu"``) or is not available here (``"cuda"`` without a
    GPU, ``"cuda:7"`` on a one-GPU machine). The message lists the devices that are."""


class InvalidTileError(LangSAMError, ValueError):
    """Sliced-inference settings that cannot be used: a tile size under 32 pixels, an overlap
    outside [0, 1), an unknown merge method or metric, a match threshold outside [0, 1]."""


class RayNotInstalledError(InvalidRunError, ImportError):
    """A Ray run (``lang-sam predict --ray``, :func:`lang_sam.distributed.label_dataset`) without Ray
    Data installed; the message gives the install command (``pip install 'lang-sam[ray]'``)."""


class RayJobError(LangSAMError, RuntimeError):
    """A Ray run that Ray itself could not carry on (its workers kept dying while loading the
    models, the cluster went away); the message holds Ray's error. Images written so far are
    kept: rerun with ``resume`` to finish."""
