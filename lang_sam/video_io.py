"""Reading and writing videos, one frame at a time.

:func:`open_video` takes what :meth:`LangSAM.predict_video` accepts and gives a
:class:`VideoSource`: its metadata (``fps``, ``frame_count``, ``image_size``, each None when not
known before decoding) and its frames, decoded lazily as ``HxWx3`` uint8 RGB numpy arrays, one at a
time, so a video of any length is never held in memory:

- a video file (anything FFmpeg decodes: mp4, mov, mkv, webm, avi, ...), read with PyAV
  (``pip install "lang-sam[video]"``), streamed packet by packet;
- a folder of frame images (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.webp``, ``.tif``,
  ``.tiff``), in natural order (``2.jpg`` before ``10.jpg``), each read when its turn comes;
- any iterable of frames (a generator, a camera reader, a list): PIL images or ``HxWx3`` uint8
  arrays (``HxW`` / ``HxWx4`` and 16-bit or [0, 1] float arrays are converted as everywhere in
  lang-sam, :func:`lang_sam.validation.to_rgb_array`).

Every frame must have the first frame's size. Problems are typed errors:
:class:`~lang_sam.errors.VideoNotFoundError` (no such path),
:class:`~lang_sam.errors.InvalidVideoError` (undecodable file, no video stream, empty folder, a bad
frame: its index, what was expected and what arrived), :class:`~lang_sam.errors.VideoNotInstalledError`
(PyAV missing). :class:`VideoWriter` writes an mp4 (H.264) atomically.

``open_video(path, max_pixels=N)`` (the server and the demo) bounds what a hostile file can cost:
FFmpeg's decoders are told to refuse frames over the limit before allocating them, while the
container is probed and while it is decoded, so a file whose header understates its frames' size
is refused (:class:`~lang_sam.errors.VideoTooLargeError`) without a full frame ever being decoded.

A file that ends before the frame count its header announces (a cut upload, an interrupted copy)
is read to its end; when the shortfall is clear (:func:`count_shortfall`) the source's
``warning`` says so and it is logged: a warning, not an error, because headers' counts can be
approximate and the frames read are good.

PyAV is imported only when a video file is opened or written (``import lang_sam`` never imports it).
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

from lang_sam.errors import (
    ImageNotFoundError,
    InvalidImageError,
    InvalidVideoError,
    VideoNotFoundError,
    VideoNotInstalledError,
    VideoTooLargeError,
)
from lang_sam.validation import open_image, to_rgb_array

logger = logging.getLogger(__name__)

__all__ = ["VideoSource", "VideoWriter", "open_video", "iter_frames", "FRAME_SUFFIXES", "VIDEO_SUFFIXES",
           "natural_key", "count_shortfall"]

#: Image suffixes a frame folder's frames may have (lower-cased); other files are ignored.
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Suffixes read as video files when a folder of videos is listed (``lang-sam track``); any file
#: FFmpeg decodes is accepted when named directly.
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")


def _av():
    try:
        import av
    except ImportError as exc:
        raise VideoNotInstalledError(
            'reading or writing video files needs PyAV: pip install "lang-sam[video]" '
            f"(import av failed: {exc})") from exc
    return av


def count_shortfall(declared: int | None, read: int) -> int:
    """How many frames a file that ended after ``read`` frames clearly lacks against the
    ``declared`` count of its header, else 0: a shortfall of at most 2 frames or 2% of
    ``declared`` (whichever is more) is taken as the header's imprecision (edit lists, dropped
    frames counted by AVI indexes), not as a cut file."""
    if not declared or read >= declared:
        return 0
    missing = declared - read
    return missing if missing > max(2, declared // 50) else 0


def _decoder_limit(max_pixels: int) -> int:
    """FFmpeg's ``max_pixels`` for a limit of ``max_pixels`` (width x height): its decoders compare
    the width rounded up to 64 (row alignment) times the height, so the limit they are given has
    a 25% margin (enough for frames 256 pixels wide or more); each decoded frame's real size is
    then checked against the exact limit."""
    return max_pixels + max_pixels // 4


_OVER_LIMIT = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")


@contextmanager
def _ffmpeg_errors(av, on: bool):
    """FFmpeg's error lines logged while the block runs (when ``on``), to tell a frame refused
    for its size from a damaged one. PyAV drops FFmpeg's log by default: its callback is
    installed (and repeats kept) for the block only, then put back as it was."""
    if not on:
        yield []
        return
    level, repeats = av.logging.get_level(), av.logging.get_skip_repeated()
    if level is None:
        av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)
    try:
        with av.logging.Capture(local=False) as logs:
            yield logs
    finally:
        av.logging.set_skip_repeated(repeats)
        if level is None:
            av.logging.set_level(None)


def _refused_size(logs) -> tuple[int, int] | None:
    """``(W, H)`` of a frame FFmpeg refused for its ``max_pixels``, from its log, else None."""
    for _, _, message in logs:
        m = _OVER_LIMIT.search(message)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def natural_key(name: str) -> list:
    """Sort key putting ``frame2`` before ``frame10`` (digit runs compared as numbers)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", name) if part]


def _describe(frame: Any) -> str:
    if isinstance(frame, np.ndarray):
        return f"a {frame.dtype} array of shape {frame.shape}"
    if isinstance(frame, Image.Image):
        return f"a {frame.mode} PIL image of {frame.width}x{frame.height}"
    return f"a {type(frame).__name__}"


class VideoSource:
    """A video opened for reading (:func:`open_video`); iterate it for its frames.

    Attributes:
        source: the path as text, or ``"frames"`` for an iterable.
        kind: ``"file"``, ``"folder"`` or ``"frames"``.
        fps: frames per second (float) of a video file; None for a folder or an iterable.
        frame_count: the number of frames when known before decoding (a folder's file count, a
            file's container header, ``len()`` of a sized iterable), else None. A file's header
            count may be approximate; the frames yielded are what the file holds.
        image_size: ``(H, W)`` of the frames when known before decoding (files and folders),
            else None until the first frame is read.
        max_pixels: a file's limit on each frame's width x height (None: none), enforced while
            probing and decoding (:class:`~lang_sam.errors.VideoTooLargeError`).
        frames_read: the frames the last pass over a file yielded when it reached the file's
            end, else None.
        warning: after a pass that read a file to its end, a sentence when it held clearly fewer
            frames than its header announced (:func:`count_shortfall`; also logged), else None.

    Iterating yields ``HxWx3`` uint8 C-contiguous RGB arrays, one per frame, decoded as they are
    asked for; a :class:`VideoSource` of a file or folder can be iterated more than once (each pass
    decodes again), one of a one-shot iterable (a generator) once.
    """

    def __init__(self, kind: str, source: str, *, fps: float | None = None, frame_count: int | None = None,
                 image_size: tuple[int, int] | None = None, frames: Iterable[Any] | None = None,
                 files: list[Path] | None = None, max_pixels: int | None = None):
        self.kind, self.source = kind, source
        self.fps, self.frame_count, self.image_size = fps, frame_count, image_size
        self._frames, self._files = frames, files
        self.max_pixels = max_pixels
        self.frames_read: int | None = None
        self.warning: str | None = None

    def __repr__(self) -> str:
        size = "unknown size" if self.image_size is None else f"{self.image_size[1]}x{self.image_size[0]}"
        count = "? frames" if self.frame_count is None else f"{self.frame_count} frames"
        fps = "" if self.fps is None else f", {self.fps:g} fps"
        return f"VideoSource({self.kind} {self.source!r}, {count}, {size}{fps})"

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.kind == "file":
            raw = self._decode_file()
        elif self.kind == "folder":
            raw = self._read_folder()
        else:
            raw = self._convert(self._frames or ())
        return self._same_size(raw)

    # -- one checked frame at a time --------------------------------------------------------
    def _bad(self, index: int | None, expected: str, got: str, why: str = "") -> InvalidVideoError:
        where = f"frame {index} of " if index is not None else ""
        return InvalidVideoError(
            f"{where}{self.source if self.kind != 'frames' else 'the frames'}: {why}expected {expected}, got {got}",
            source=self.source, frame_index=index, expected=expected, got=got)

    def _same_size(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for i, frame in enumerate(frames):
            size = frame.shape[:2]
            if self.image_size is None:
                self.image_size = (int(size[0]), int(size[1]))
            elif tuple(size) != tuple(self.image_size):
                H, W = self.image_size
                raise self._bad(i, f"a {W}x{H} frame (the size of frame 0)", f"{size[1]}x{size[0]}")
            yield frame

    def _convert(self, frames: Iterable[Any]) -> Iterator[np.ndarray]:
        expected = "a PIL image or an HxWx3 uint8 numpy array"
        for i, frame in enumerate(frames):
            try:
                if isinstance(frame, Image.Image):
                    frame = np.asarray(frame.convert("RGB") if frame.mode not in (
                        "RGB", "I", "I;16", "I;16B", "I;16L", "I;16N", "F") else frame)
                elif not isinstance(frame, np.ndarray):
                    raise self._bad(i, expected, _describe(frame))
                yield to_rgb_array(frame, what=f"frame {i}")
            except InvalidImageError as exc:
                raise self._bad(i, expected, _describe(frame), f"{exc}; ") from exc

    def _read_folder(self) -> Iterator[np.ndarray]:
        for i, path in enumerate(self._files or ()):
            try:
                pil = open_image(path)
            except ImageNotFoundError as exc:
                raise VideoNotFoundError(f"frame {i} of {self.source}: {path.name} was removed while reading",
                                         source=str(path)) from exc
            except InvalidImageError as exc:
                raise self._bad(i, "an image file", f"{path.name}, which does not decode ({exc})") from exc
            yield np.ascontiguousarray(np.asarray(pil))

    def _too_large(self, index: int, size: tuple[int, int]) -> VideoTooLargeError:
        W, H = size
        got = f"{W}x{H} = {W * H:,} pixels per frame"
        return VideoTooLargeError(
            f"frame {index} of {self.source}: expected at most {self.max_pixels:,} pixels per frame "
            f"(width x height), got {got}", source=self.source, limit=int(self.max_pixels or 0),
            what="pixels", frame_index=index, expected=f"<= {self.max_pixels}", got=got)

    def _decode_file(self) -> Iterator[np.ndarray]:
        av = _av()
        limit = self.max_pixels
        self.frames_read = self.warning = None
        container, _ = _open_container(av, self.source, limit)
        index = 0
        try:
            stream = container.streams.video[0]
            if limit is None:
                stream.thread_type = "AUTO"
            else:  # the decoder refuses larger frames before allocating them; one frame at a time
                stream.thread_type = "SLICE"  # (frame threads hold a frame each, and lose errors)
                stream.codec_context.options = {"max_pixels": str(_decoder_limit(limit))}
            packets = container.demux(stream)
            while True:
                with _ffmpeg_errors(av, limit is not None) as logs:
                    try:
                        packet = next(packets)
                    except StopIteration:
                        break
                    try:
                        decoded = packet.decode()
                    except av.FFmpegError as exc:
                        refused = _refused_size(logs)
                        if refused is not None:
                            raise self._too_large(index, refused) from None
                        raise self._bad(index, "a decodable video frame", f"a decoding error ({exc})") from exc
                for frame in decoded:
                    if limit is not None and frame.width * frame.height > limit:
                        raise self._too_large(index, (frame.width, frame.height))
                    yield np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
                    index += 1
        except av.FFmpegError as exc:
            raise self._bad(index, "a decodable video frame", f"a decoding error ({exc})") from exc
        finally:
            container.close()
        self.frames_read = index
        missing = count_shortfall(self.frame_count, index)
        if missing:
            self.warning = (f"the video ended after {index} frame(s) while its header announces "
                            f"{self.frame_count}: {missing} are missing (the file may be cut short)")
            logger.warning("%s: %s", self.source, self.warning)


def _open_container(av, path: str, max_pixels: int | None = None):
    """``(container, refused)``: ``av.open(path)`` and the ``(W, H)`` of a frame FFmpeg refused
    for its size while probing (else None). With ``max_pixels``, FFmpeg's probing of the streams (which decodes a
    frame) runs under the decoders' limit, and a container whose streams are found only by
    decoding packets (MPEG program streams, FLV), where no decoder option can be set before, is
    refused."""
    kwargs: dict[str, Any] = {}
    if max_pixels is not None:
        option = {"max_pixels": str(_decoder_limit(max_pixels))}
        kwargs = {"options": option, "stream_options": [option]}
    with _ffmpeg_errors(av, max_pixels is not None) as logs:
        try:
            container = av.open(path, mode="r", **kwargs)
        except av.FFmpegError as exc:
            raise InvalidVideoError(f"{path}: expected a video file FFmpeg can decode, got an error: {exc}",
                                    source=path, expected="a decodable video file", got=str(exc)) from exc
        except ValueError as exc:  # PyAV: stream options, and no stream before probing
            raise InvalidVideoError(
                f"{path}: expected a container that lists its streams in its header (mp4, mov, mkv, "
                "webm, avi, ts, ...), got one whose streams are found only by decoding (MPEG program "
                "stream, FLV), which this service does not probe", source=path,
                expected="streams listed in the header", got="streams found by decoding") from exc
    if not container.streams.video:
        container.close()
        raise InvalidVideoError(f"{path}: expected a file with a video stream, got none",
                                source=path, expected="a video stream", got="none")
    return container, _refused_size(logs)


def open_video(video: Any, *, max_pixels: int | None = None) -> VideoSource:
    """What :meth:`LangSAM.predict_video` reads: ``video`` a path (``str`` / ``os.PathLike``) of a
    video file or of a folder of frame images, a :class:`VideoSource`, or any iterable of frames
    (PIL images or ``HxWx3`` uint8 arrays). Paths are checked and a file's header read now; frames
    are decoded only when iterated.

    ``max_pixels`` (video files; what a service reading untrusted uploads sets): FFmpeg probes
    the file and decodes each frame under that limit (width x height), so no frame over it is
    ever decoded whole: a frame over it raises :class:`~lang_sam.errors.VideoTooLargeError`
    (here if the probe meets it, else when that frame is reached); a file whose frame size
    neither its header nor its first frame gives, or whose streams are found only by decoding
    (MPEG program streams, FLV), raises :class:`~lang_sam.errors.InvalidVideoError`.

    Raises:
        VideoNotFoundError: ``video`` is a path that is neither a file nor a folder.
        VideoNotInstalledError: ``video`` is a video file and PyAV (the ``[video]`` extra) is
            not installed.
        VideoTooLargeError: with ``max_pixels``, FFmpeg's probe of the file or its header gives a
            frame over it.
        InvalidVideoError: a folder without frame images; a file FFmpeg cannot open, without a
            video stream, or (with ``max_pixels``) of unknown frame size or streams found only by
            decoding; one image (bytes, a PIL image, a 3-d array) or an object that is not
            iterable instead of a video.

    Iterating the returned :class:`VideoSource` raises, at the frame concerned,
    :class:`~lang_sam.errors.InvalidVideoError` (a frame that does not decode, is not an image, or
    differs in size from frame 0), :class:`~lang_sam.errors.VideoTooLargeError` (with
    ``max_pixels``) or :class:`~lang_sam.errors.VideoNotFoundError` (a folder's frame removed
    while reading).
    """
    if isinstance(video, VideoSource):
        return video
    if isinstance(video, (str, os.PathLike)):
        path = Path(video).expanduser()
        text = str(video)
        if path.is_dir():
            files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES),
                           key=lambda p: natural_key(p.name))
            if not files:
                raise InvalidVideoError(
                    f"{text}: expected a folder of frame images ({', '.join(FRAME_SUFFIXES)}), got none",
                    source=text, expected="frame images", got="an empty folder")
            size = None
            try:
                with Image.open(files[0]) as first:
                    size = (first.height, first.width)  # header only; frames are checked as read
            except (OSError, ValueError):
                pass  # reported with its index when it is read
            return VideoSource("folder", text, frame_count=len(files), image_size=size, files=files)
        if not path.is_file():
            raise VideoNotFoundError(f"video not found: {text!r} (expected a video file or a folder of frames)",
                                     source=text)
        av = _av()
        container, refused = _open_container(av, str(path), max_pixels)
        try:
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else None
            count = int(stream.frames) or None
            ctx = stream.codec_context
            size = (int(ctx.height), int(ctx.width)) if ctx.height and ctx.width else None
        finally:
            container.close()
        source = VideoSource("file", str(path), fps=fps, frame_count=count, image_size=size,
                             max_pixels=max_pixels)
        if max_pixels is not None:
            if refused is not None:
                raise source._too_large(0, refused)
            if size is None:
                raise InvalidVideoError(
                    f"{text}: expected a video whose frame size its header or its first frame gives, "
                    "got none (the first frame does not decode)", source=str(path),
                    expected="a known frame size", got="none")
            if size[0] * size[1] > max_pixels:
                raise source._too_large(0, (size[1], size[0]))
        return source
    if isinstance(video, (bytes, bytearray, Image.Image, np.ndarray)) and not (
            isinstance(video, np.ndarray) and video.ndim == 4):
        raise InvalidVideoError(
            f"expected a video file, a folder of frames or an iterable of frames, got {_describe(video)} "
            "(one image: use predict)", source="frames", expected="a video", got=_describe(video))
    try:
        iter(video)
    except TypeError:
        raise InvalidVideoError(
            f"expected a video file, a folder of frames or an iterable of frames, got {_describe(video)}",
            source="frames", expected="a video", got=_describe(video)) from None
    count = len(video) if hasattr(video, "__len__") else None
    return VideoSource("frames", "frames", frame_count=count, frames=video)


def iter_frames(video: Any) -> Iterator[np.ndarray]:
    """The frames of ``video`` (see :func:`open_video`) as ``HxWx3`` uint8 RGB arrays, decoded one
    at a time.

    Raises:
        VideoNotFoundError: as :func:`open_video`, now; while iterating, a folder's frame removed.
        VideoNotInstalledError: as :func:`open_video`.
        InvalidVideoError: as :func:`open_video`, now; while iterating, at a frame that does not
            decode, is not an image, or differs in size from frame 0.
    """
    return iter(open_video(video))


class VideoWriter:
    """Write frames to an mp4 file (H.264, yuv420p) atomically: frames go to a temporary file
    next to ``path``, renamed to ``path`` by :meth:`close`; an error inside ``with`` (or
    :meth:`abort`) removes it, so ``path`` is either the whole video or untouched.

    ``fps``: frames per second (a float; stored as a rational). ``crf``: H.264 quality (0 best,
    51 worst; 23 is FFmpeg's default). Frames are ``HxWx3`` uint8 RGB arrays (or PIL images), all
    of the first frame's size; odd widths or heights are padded with one black column / row
    (yuv420p needs even sizes). ``codec`` falls back to MPEG-4 Part 2 when this FFmpeg has no
    H.264 encoder.

    Usage::

        with VideoWriter("out.mp4", fps=30) as w:
            for frame in frames:
                w.write(frame)

    Raises:
        VideoNotInstalledError: PyAV (the ``[video]`` extra) is not installed.
        InvalidVideoError: ``fps`` is not a number > 0.
        OSError: ``path``'s folder cannot be made.
        av.FFmpegError: FFmpeg cannot create the temporary file next to ``path``.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, *, crf: int = 23, codec: str = "h264"):
        from fractions import Fraction

        self.av = _av()
        self.path = Path(path)
        if not (fps and float(fps) > 0):
            raise InvalidVideoError(f"{self.path}: expected fps > 0, got {fps!r}", source=str(self.path),
                                    expected="fps > 0", got=repr(fps))
        self.fps = Fraction(float(fps)).limit_denominator(1001)
        self.crf = int(crf)
        self.codec = codec if codec in self.av.codecs_available else "mpeg4"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.container = self.av.open(str(self.tmp), mode="w", format="mp4")
        self.stream: Any = None  # PyAV's video stream, made on the first frame
        self.image_size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: Any) -> None:
        """Append one ``HxWx3`` uint8 RGB frame.

        Raises:
            InvalidVideoError: ``frame`` is not an ``HxWx3`` uint8 array (or a PIL image), or is
                not the size of the first frame.
        """
        arr = np.asarray(frame.convert("RGB")) if isinstance(frame, Image.Image) else frame
        if not (isinstance(arr, np.ndarray) and arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8):
            raise InvalidVideoError(
                f"{self.path}: frame {self.frames}: expected an HxWx3 uint8 array, got {_describe(frame)}",
                source=str(self.path), frame_index=self.frames, expected="an HxWx3 uint8 array",
                got=_describe(frame))
        H, W = arr.shape[:2]
        if self.stream is None:
            self.image_size = (H, W)
            self.stream = self.container.add_stream(self.codec, rate=self.fps)
            self.stream.width, self.stream.height = W + W % 2, H + H % 2
            self.stream.pix_fmt = "yuv420p"
            if self.codec in ("h264", "libx264"):
                self.stream.options = {"crf": str(self.crf)}
        elif self.image_size is not None and (H, W) != self.image_size:
            h, w = self.image_size
            raise InvalidVideoError(
                f"{self.path}: frame {self.frames}: expected a {w}x{h} frame (the size of frame 0), got {W}x{H}",
                source=str(self.path), frame_index=self.frames, expected=f"{w}x{h}", got=f"{W}x{H}")
        if H % 2 or W % 2:
            arr = np.pad(arr, ((0, H % 2), (0, W % 2), (0, 0)))
        vf = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it to ``path`` (returned).

        Raises:
            InvalidVideoError: no frame was written (no file is written either).
            av.FFmpegError: FFmpeg cannot finish the file (the temporary file is removed).
            OSError: the file cannot be moved to ``path`` (the temporary file is removed).
        """
        if self.container is None:
            return self.path
        if self.stream is None:
            self.abort()
            raise InvalidVideoError(f"{self.path}: expected at least one frame, got none",
                                    source=str(self.path), expected="one frame or more", got="0 frames")
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = None
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temporary file (``path`` is left as it was)."""
        if self.container is not None:
            try:
                self.container.close()
            except self.av.FFmpegError:
                pass  # closing a broken file; it is removed below
            self.container = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
