"""Typed errors raised by lang-sam.

Every error subclasses :class:`LangSAMError` (catch-all for the library) *and* the built-in
exception a caller would naturally catch (``ValueError``, ``FileNotFoundError``,
``ConnectionError``), so existing ``except ValueError:`` code keeps working.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

__all__ = [
    "LangSAMError",
    "UnknownModelError",
    "InvalidModelSourceError",
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
    "ImageTooThinError",
    "ImageNotFoundError",
    "InvalidPromptError",
    "PromptTooLongError",
    "InvalidThresholdError",
    "InvalidClassMapError",
    "UnknownClassError",
    "InvalidMaskError",
    "InvalidArgumentError",
    "InvalidResultError",
    "NoImageError",
    "InvalidPromptTypeError",
    "InvalidSettingError",
    "InvalidRunError",
    "OutputLockedError",
    "OutputCollisionError",
    "EvaluationInputError",
    "DeviceError",
    "InvalidPrecisionError",
    "SlowPrecisionWarning",
    "IgnoredArgumentWarning",
    "InvalidTileError",
    "RayNotInstalledError",
    "RayJobError",
    "SupervisionNotInstalledError",
    "InvalidClassesError",
    "RunStoppedError",
    "ModelSwitchError",
    "ModelLoadError",
    "TooManyPromptsError",
    "PortUnavailableError",
    "VideoNotFoundError",
    "InvalidVideoError",
    "VideoNotInstalledError",
    "TrackingNotSupportedError",
    "VideoTooLargeError",
    "AccessDeniedError",
    "GatedModelError",
    "MissingTokenError",
    "EngineUnavailableError",
    "BackendUnavailableError",
    "UnsupportedPromptError",
    "GeoNotInstalledError",
    "InvalidRasterError",
    "UnknownBandError",
    "RasterTransformError",
    "PromptOutsideRasterError",
    "NoCRSWarning",
    "MODEL_ERRORS",
    "name_params",
]


_E = TypeVar("_E", bound="LangSAMError")


class LangSAMError(Exception):
    """Base class of every error raised on purpose by lang-sam.

    An error made by :meth:`naming` mentions parameters: its message names them as Python code
    does (``resume=True``), and :meth:`worded` names them another way, e.g. as the ``lang-sam``
    command's flags (``--resume``), so each interface speaks its own language.
    """

    #: The message with a ``{name}`` field per parameter it mentions (None: no parameter).
    template: str | None = None
    #: How Python code spells each parameter of :attr:`template` (``{"resume": "resume=True"}``).
    params: dict = {}

    @classmethod
    def naming(cls: type[_E], template: str, fields: dict | None = None, /, **params: str) -> _E:
        """An error of this class whose message is ``template`` with each ``{name}`` field replaced
        by ``params[name]`` (the Python spelling). Other text of ``template`` is kept as it is,
        braces included. ``fields``: the keyword arguments of the class's constructor (its
        attributes, e.g. :class:`RunStoppedError`'s ``output``), given positionally."""
        exc = cls(name_params(template, params), **(fields or {}))
        exc.template, exc.params = template, dict(params)
        return exc

    def worded(self, names: dict) -> str:
        """The message with each parameter named by ``names`` (falling back to the Python
        spelling): ``exc.worded({"resume": "--resume"})``."""
        if self.template is None:
            return str(self)
        return name_params(self.template, {k: names.get(k, v) for k, v in self.params.items()})


def name_params(template: str, values: dict) -> str:
    """``template`` with each ``{name}`` field of ``values`` replaced by its value; other text,
    braces included, is kept (see :meth:`LangSAMError.naming`; log records carry the same
    ``(template, values)`` pair in their ``named`` attribute)."""
    import re

    return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), m.group(0))), template)


class UnknownModelError(LangSAMError, ValueError):
    """A model type that is not in the registry (``sam_type="vit_x"``)."""


class InvalidModelSourceError(LangSAMError, ValueError):
    """Something other than an http(s) URL written into ``SAM_MODELS`` / ``GDINO_MODELS``.
    Attributes: ``table`` (which dict), ``model`` (the key), ``value`` (what was written)."""

    def __init__(self, message: str, *, table: str, model: str, value):
        super().__init__(message)
        self.table, self.model, self.value = table, model, value


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


class AccessDeniedError(DownloadError, PermissionError):
    """A download source answered HTTP 401 or 403: retrying will not help, credentials might.
    ``url`` is the refused URL, ``status`` the HTTP status."""

    def __init__(self, message: str, *, url: str = "", status: int = 0):
        super().__init__(message)
        self.url, self.status = url, status
        self.reason = message

    def __reduce__(self):
        return (_rebuild_denied, (type(self), str(self), self.__dict__))


def _rebuild_denied(cls, message, state):
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class GatedModelError(AccessDeniedError):
    """The hub refused a gated repository's file (HTTP 401/403) although a token was sent: the
    account has not been granted access. ``repo`` (``"facebook/sam3"``), ``access_url`` (where to
    request access), ``url``, ``status``."""

    def __init__(self, message: str, *, repo: str = "", access_url: str = "", url: str = "",
                 status: int = 0):
        super().__init__(message, url=url, status=status)
        self.repo, self.access_url = repo, access_url


class MissingTokenError(GatedModelError):
    """A gated repository's file was asked for without an access token (none passed, ``HF_TOKEN``
    unset, no ``huggingface-cli login``), and the hub refused it (HTTP 401/403)."""


class EngineUnavailableError(LangSAMError, ImportError):
    """An engine whose library is missing or too old (SAM 3 needs ``transformers>=5``).
    ``package`` names it, ``required`` the version needed, ``installed`` the one found (None:
    not installed)."""

    def __init__(self, message: str, *, package: str = "", required: str = "",
                 installed: str | None = None):
        super().__init__(message)
        self.package, self.required, self.installed = package, required, installed

    def __reduce__(self):
        return (_rebuild_denied, (type(self), str(self), self.__dict__))


class BackendUnavailableError(EngineUnavailableError):
    """A backend whose runtime is not installed (``backend="openvino"`` without OpenVINO).
    ``backend`` names the backend, ``extra`` the pip extra that installs it
    (``pip install "lang-sam[<extra>]"``); ``package`` / ``required`` / ``installed`` as in
    :class:`EngineUnavailableError`."""

    def __init__(self, message: str, *, package: str = "", required: str = "", installed: str | None = None,
                 backend: str = "", extra: str = ""):
        super().__init__(message, package=package, required=required, installed=installed)
        self.backend, self.extra = backend, extra


class UnsupportedPromptError(LangSAMError, TypeError):
    """A prompt kind the loaded engine does not take (box / point / mask prompts on a text-only
    segmenter such as SAM 3). ``engine`` is the model type, ``prompt`` the kind refused."""

    def __init__(self, message: str, *, engine: str = "", prompt: str = ""):
        super().__init__(message)
        self.engine, self.prompt = engine, prompt

    def __reduce__(self):
        return (_rebuild_denied, (type(self), str(self), self.__dict__))


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
    """An image over the pixel limit (``LANG_SAM_MAX_IMAGE_PIXELS``), refused before decoding.
    Attributes: ``width``, ``height`` (from the header) and ``limit`` (pixels, width x height);
    each None when not known."""

    def __init__(self, message: str, *, width: int | None = None, height: int | None = None,
                 limit: int | None = None):
        super().__init__(message)
        self.width, self.height, self.limit = width, height, limit


class ImageTooThinError(InvalidImageError):
    """An image so thin that an engine's resize to its input would make one side 0 pixels
    (GroundingDINO's to a short side of 800 px, the long one at most 1333, SAM v1's to a long side
    of 1024 px: a 100000x1 image). Attributes: ``width``, ``height``, ``engine`` (the model type),
    ``resized`` (the ``(height, width)`` the resize gives) and ``max_aspect`` (about the largest
    ratio of the long side to the short one that the engine takes: 2666 for GroundingDINO, 2048
    for SAM v1)."""

    def __init__(self, message: str, *, width: int, height: int, engine: str,
                 resized: tuple[int, int], max_aspect: float):
        super().__init__(message)
        self.width, self.height, self.engine = width, height, engine
        self.resized, self.max_aspect = resized, max_aspect

    def __reduce__(self):
        return (_rebuild_denied, (type(self), str(self), self.__dict__))


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


class UnknownClassError(LangSAMError, KeyError):
    """A class name a fixed :class:`~lang_sam.labeling.classes.ClassMap` does not have (``name``)."""

    def __init__(self, message: str, *, name: str):
        super().__init__(message)
        self.name = name

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InvalidMaskError(LangSAMError, ValueError):
    """Masks of the wrong shape or size for where they are used (``(N, H, W)`` expected, crops of
    another image size, ...)."""


class InvalidArgumentError(LangSAMError, ValueError):
    """Any other argument value that cannot be used (a count below its minimum, lists of
    different lengths, a family that does not exist); the message names the parameter."""


class InvalidResultError(LangSAMError, ValueError):
    """A result (:class:`~lang_sam.results.Detections`, :class:`~lang_sam.Prediction`, the
    server's :class:`~lang_sam.results.ServedPrediction`, ...) built from fields that do not fit
    together, or a :class:`~lang_sam.results.ServedMasks` read as another kind. Attributes: ``result`` (the type's name), ``field`` (the
    field at fault), ``expected`` and ``got`` (what it should be and what it was, as text)."""

    def __init__(self, message: str, *, result: str, field: str, expected: str, got: str):
        super().__init__(message)
        self.result, self.field, self.expected, self.got = result, field, expected, got


class NoImageError(LangSAMError, RuntimeError):
    """A call that works on the image given to ``set_image`` before any was given."""


class InvalidPromptTypeError(LangSAMError, TypeError):
    """A prompt argument of the wrong type (a string where a list of prompts is expected)."""


class InvalidSettingError(LangSAMError, ValueError):
    """An environment variable of lang-sam's with a value it cannot use. Attributes: ``name`` (the
    variable) and ``value`` (what it held)."""

    def __init__(self, message: str, *, name: str, value: str):
        super().__init__(message)
        self.name, self.value = name, value


class InvalidRunError(LangSAMError, ValueError):
    """A labelling run that cannot start as asked: a missing input, no image, two images that would
    write the same outputs, an output path that is not a folder, or ``resume`` with other settings."""


class OutputLockedError(InvalidRunError):
    """An output folder another lang-sam run is writing (its lock is held). Attributes: ``path``
    (the output folder), and what the running one recorded of itself: ``pid``, ``host``,
    ``started`` (ISO time), ``command`` (each None when unknown)."""

    def __init__(self, message: str, *, path: str, pid: int | None = None, host: str | None = None,
                 started: str | None = None, command: str | None = None):
        super().__init__(message)
        self.path, self.pid, self.host, self.started, self.command = path, pid, host, started, command


class OutputCollisionError(InvalidRunError):
    """A run that would write over files lang-sam did not write (a user's own ``coco/`` folder in
    the output folder, say). ``path``: the output folder; ``files``: the files in the way,
    relative to it."""

    def __init__(self, message: str, *, path: str, files: list[str]):
        super().__init__(message)
        self.path, self.files = path, list(files)


class EvaluationInputError(InvalidRunError):
    """A prediction or ground-truth file that ``lang-sam eval`` / ``compare`` cannot score: missing,
    not the format expected, or sharing no image / class / sequence with the other. Attributes:
    ``path`` (the file or folder), ``expected`` and ``got`` (what was looked for and found)."""

    def __init__(self, message: str, *, path: str, expected: str = "", got: str = ""):
        super().__init__(message)
        self.path, self.expected, self.got = path, expected, got


class DeviceError(LangSAMError, ValueError):
    """A device that is not a device name (``"gpu"``) or is not available here (``"cuda"`` without a
    GPU, ``"cuda:7"`` on a one-GPU machine). The message lists the devices that are."""


class InvalidPrecisionError(LangSAMError, ValueError):
    """A precision that is not ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``, or ``"fp16"``
    off CUDA."""


class SlowPrecisionWarning(UserWarning):
    """``precision="bf16"`` on a CPU that emulates bfloat16: slower than float32, not faster."""


class IgnoredArgumentWarning(UserWarning):
    """An argument the loaded engine has no use for (``text_threshold`` with SAM 3)."""


class InvalidTileError(LangSAMError, ValueError):
    """Sliced-inference settings that cannot be used: a tile size under 32 pixels, an overlap
    outside [0, 1), an unknown merge method or metric, a match threshold outside [0, 1]."""


class RayNotInstalledError(InvalidRunError, ImportError):
    """A Ray run (``lang-sam predict --ray``, :func:`lang_sam.labeling.distributed.label_dataset`) without Ray
    Data installed; the message gives the install command (``pip install 'lang-sam[ray]'``)."""


class SupervisionNotInstalledError(LangSAMError, ImportError):
    """``to_supervision()`` without a usable ``supervision`` (not installed, or older than the
    first release with ``sv.CompactMask``, such as the 0.6.0 that groundingdino-py 0.4.0 pins).
    Attributes: ``found`` (the installed version, or None), ``required`` (``"supervision>=0.28"``);
    the message gives the install command."""

    def __init__(self, message: str, *, found: str | None = None, required: str = ""):
        super().__init__(message)
        self.found, self.required = found, required


class InvalidClassesError(LangSAMError, ValueError):
    """A ``classes=`` list that cannot name the detections given to ``to_supervision()``: not a
    list of distinct strings, or missing phrases the detections carry. Attributes: ``classes``
    (as given), ``unknown`` (the detections' phrases it lacks, in order of first appearance)."""

    def __init__(self, message: str, *, classes=None, unknown: list[str] | None = None):
        super().__init__(message)
        self.classes, self.unknown = classes, list(unknown or [])


class RayJobError(LangSAMError, RuntimeError):
    """A Ray run that Ray itself could not carry on (its workers kept dying while loading the
    models, the cluster went away); the message holds Ray's error. Images written so far are
    kept: rerun with ``resume`` to finish."""


class PortUnavailableError(LangSAMError, OSError):
    """A server address that cannot be listened on (the port is taken, or the host is not an
    address of this machine), found before the models are loaded."""


#: The errors that mean the models cannot be had: weights missing and not downloadable, a failed
#: download, a corrupt or unusable checkpoint (``lang-sam`` exits with status 3 on them).
MODEL_ERRORS = (WeightsNotFoundError, DownloadError, CheckpointError, ChecksumMismatchError)


class RunStoppedError(LangSAMError, RuntimeError):
    """A labelling run stopped by an error that is not one image's fault (out of memory, a full
    disk, a bug): the images labelled before it are written and recorded, and a resumed run
    labels the rest. Attributes: ``output`` (the output folder), ``records`` (where the records
    are), ``image`` (the image being labelled, relative to its input), ``labelled`` (images done
    in this run before it), ``cause`` (``"<type>: <message>"`` of the error; the error itself is
    chained as ``__cause__`` in one process)."""

    def __init__(self, message: str, *, output: str | None = None, records: str | None = None,
                 image: str | None = None, labelled: int = 0, cause: str | None = None):
        super().__init__(message)
        self.output, self.records, self.image = output, records, image
        self.labelled, self.cause = labelled, cause


class ModelSwitchError(LangSAMError, PermissionError):
    """A request for a model type other than the served one while switching is off."""


class ModelLoadError(LangSAMError, RuntimeError):
    """A model the service could not load. The message names the model type only (it is shown to
    clients); the cause is chained and logged. ``missing`` is True when the weights could not be
    found or fetched (the service is unavailable) and False when they are broken."""

    def __init__(self, message: str, *, missing: bool):
        super().__init__(message)
        self.missing = missing


class TooManyPromptsError(LangSAMError, ValueError):
    """More SAM prompts in one request than the service's ``max_detections``."""


class VideoNotFoundError(LangSAMError, FileNotFoundError):
    """A video file or frame folder that does not exist. Attribute: ``source`` (the path)."""

    def __init__(self, message: str, *, source: str):
        super().__init__(message)
        self.source = source


class InvalidVideoError(LangSAMError, ValueError):
    """A video that cannot be read: a file that does not decode or has no video stream, a folder
    with no frame images, a frame that is not an ``HxWx3`` image or differs in size from the first.
    Attributes: ``source`` (the path, or ``"frames"`` for an iterable), ``frame_index`` (0-based,
    None when no frame is at fault), ``expected`` and ``got`` (text)."""

    def __init__(self, message: str, *, source: str, frame_index: int | None = None,
                 expected: str = "", got: str = ""):
        super().__init__(message)
        self.source, self.frame_index, self.expected, self.got = source, frame_index, expected, got


class VideoTooLargeError(InvalidVideoError):
    """A video over a service's limits (the server's ``POST /track``, the demo's video tab): more
    frames than ``--max-frames`` or frames of more pixels than ``--max-pixels``. Attributes (besides
    :class:`InvalidVideoError`'s): ``limit`` (the limit) and ``what`` (``"frames"`` or ``"pixels"``)."""

    def __init__(self, message: str, *, source: str, limit: int, what: str, frame_index: int | None = None,
                 expected: str = "", got: str = ""):
        super().__init__(message, source=source, frame_index=frame_index, expected=expected, got=got)
        self.limit, self.what = limit, what


class VideoNotInstalledError(LangSAMError, ImportError):
    """Reading or writing a video file needs PyAV: ``pip install "lang-sam[video]"``."""


class TrackingNotSupportedError(LangSAMError, TypeError):
    """``predict_video`` with a segmenter that cannot follow objects through a video (not a
    :class:`~lang_sam.models.base.VideoSegmenter`, e.g. SAM v1's ``vit_*``). Attributes:
    ``sam_type`` (the loaded one) and ``video_types`` (the registered types that can track)."""

    def __init__(self, message: str, *, sam_type: str, video_types: list[str]):
        super().__init__(message)
        self.sam_type, self.video_types = sam_type, list(video_types)


class GeoNotInstalledError(LangSAMError, ImportError):
    """Reading or writing map rasters and vectors needs rasterio, shapely, pyproj and pyogrio:
    ``pip install "lang-sam[geo]"``. Attribute: ``missing`` (the module that failed to import)."""

    def __init__(self, message: str, *, missing: str = ""):
        super().__init__(message)
        self.missing = missing


class InvalidRasterError(LangSAMError, ValueError):
    """A raster that cannot be used: GDAL cannot open it, or a setting does not fit it.
    Attributes: ``path``, ``expected`` and ``got`` (text)."""

    def __init__(self, message: str, *, path: str = "", expected: str = "", got: str = ""):
        super().__init__(message)
        self.path, self.expected, self.got = path, expected, got


class UnknownBandError(InvalidRasterError):
    """A band number the raster does not have (``--bands 4,3,2`` on a 3-band file), or a band list
    that is not 1 or 3 numbers. Attributes (besides :class:`InvalidRasterError`'s): ``bands`` (as
    given), ``count`` (the raster's band count)."""

    def __init__(self, message: str, *, path: str = "", bands=(), count: int = 0, expected: str = "",
                 got: str = ""):
        super().__init__(message, path=path, expected=expected, got=got)
        self.bands, self.count = tuple(bands), count


class RasterTransformError(InvalidRasterError):
    """Coordinates that cannot be moved between two coordinate reference systems (an unknown CRS,
    or a point outside the target's domain). Attributes: ``source_crs``, ``target_crs``."""

    def __init__(self, message: str, *, path: str = "", source_crs: str = "", target_crs: str = ""):
        super().__init__(message, path=path, expected=f"coordinates transformable to {target_crs}",
                         got=source_crs)
        self.source_crs, self.target_crs = source_crs, target_crs


class PromptOutsideRasterError(InvalidRasterError):
    """A box or point prompt (in map coordinates) that falls outside the raster. Attributes
    (besides :class:`InvalidRasterError`'s): ``prompt`` (in raster pixels, xyxy or xy)."""

    def __init__(self, message: str, *, path: str = "", prompt=(), expected: str = "", got: str = ""):
        super().__init__(message, path=path, expected=expected, got=got)
        self.prompt = tuple(prompt)


class NoCRSWarning(UserWarning):
    """A raster without a coordinate reference system: its outputs are in pixels, not map units."""
