"""A model family that is not in lang_sam: a segmenter whose mask is its box, filled.

It stands for the next family (SAM 2.1, ...): one module implementing
:class:`lang_sam.models.base.Segmenter`, registered with ``ModelSpec(engine="plugin_engines:BoxFill")``.
tests/test_pipeline.py runs every entry point on it without editing lang_sam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lang_sam.cache import EncodingCache
from lang_sam.hub import load_checkpoint, resolve_checkpoint
from lang_sam.models.base import Segmenter
from lang_sam.results import MaskPrediction


@dataclass(frozen=True)
class BoxFillArch:
    """The family's own architecture record: how many pixels each box is shrunk by."""

    inset: int = 0


class BoxFill(Segmenter):
    """Each box's mask is the pixels inside it (shrunk by ``arch.inset``); its IoU score is 1."""

    encodings = 0  # images encoded, over every instance (a test reads it)

    def __init__(self, arch: BoxFillArch, device="cpu", *, precision: str = "fp32", cache_size: int = 2):
        self.arch, self.device, self.precision = arch, torch.device(device), precision
        self.model = torch.nn.Identity()
        self.cache = EncodingCache(cache_size)
        self._size: tuple[int, int] | None = None

    @classmethod
    def from_spec(cls, spec, ckpt_path=None, device="cpu", *, progress=True, precision="fp32",
                  cache_size=2, **options):
        state = load_checkpoint(resolve_checkpoint(spec, ckpt_path, progress=progress))
        inset = int(state["inset"]) if "inset" in state else spec.arch.inset
        return cls(BoxFillArch(inset), device, precision=precision, cache_size=cache_size)

    def encode(self, image: np.ndarray, key=None):
        BoxFill.encodings += 1
        return tuple(image.shape[:2])

    def use(self, encoding) -> None:
        self._size = encoding

    def boxes_per_chunk(self, height: int, width: int, masks_per_prompt: int = 1) -> int:
        return 3

    def predict(self, *, boxes=None, points=None, point_labels=None, mask_input=None,
                multimask_output=False, return_low_res=False) -> MaskPrediction:
        H, W = self._size
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        masks = torch.zeros((len(boxes), 1, H, W), dtype=torch.bool)
        k = self.arch.inset
        for i, (x0, y0, x1, y1) in enumerate(boxes.round().int().tolist()):
            masks[i, 0, max(y0 + k, 0):max(y1 - k, 0), max(x0 + k, 0):max(x1 - k, 0)] = True
        return MaskPrediction(masks, torch.ones((len(boxes), 1)),
                              torch.zeros((len(boxes), 1, 256, 256)) if return_low_res else None)


def expected_mask(box, image_size, inset: int = 0) -> np.ndarray:
    H, W = image_size
    x0, y0, x1, y1 = torch.as_tensor(box).round().int().tolist()
    out = np.zeros((H, W), bool)
    out[max(y0 + inset, 0):max(y1 - inset, 0), max(x0 + inset, 0):max(x1 - inset, 0)] = True
    return out


# ------------------------------------------------------------------------------------------
# Video: a box-fill segmenter that follows objects by colour, and a detector of coloured shapes
# ------------------------------------------------------------------------------------------
from lang_sam.models.base import Detector, TrackStep, VideoSegmenter  # noqa: E402 (appended section)
from lang_sam.results import Detections  # noqa: E402

#: Colour names the test detector knows (RGB).
COLORS = {"red": (230, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230), "yellow": (240, 220, 20),
          "white": (250, 250, 250)}


def _color_mask(frame: np.ndarray, rgb, tol: int = 40) -> np.ndarray:
    """``(H, W)`` bool: the pixels within ``tol`` (per channel) of ``rgb``."""
    return (np.abs(frame.astype(np.int16) - np.asarray(rgb, np.int16)) <= tol).all(-1)


def _bbox(mask: np.ndarray):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


class VideoSession:
    """One :class:`BoxFillVideo` session: each object's colour and last box, and the last
    ``memory`` frames' boxes (a bounded memory bank, as SAM 2's: it must not grow with the video)."""

    def __init__(self, memory: int = 7):
        self.objects: dict[int, tuple[tuple, list]] = {}  # id -> (colour, last box)
        self.bank: list[dict] = []  # the last ``memory`` frames' boxes per object
        self.memory = memory
        self.frames = 0
        self.prompted: list[tuple[int, int, list]] = []  # (frame, id, box) of every prompt (tests read it)
        self.dropped: list[int] = []

    def size(self) -> int:
        """Items held: objects plus memory-bank entries (what memory use grows with)."""
        return len(self.objects) + sum(len(b) for b in self.bank)


class BoxFillVideo(BoxFill, VideoSegmenter):
    """BoxFill that also follows objects through a video: an object prompted by a box takes the
    colour of most of the box's pixels; on each frame its mask is the pixels of that colour within
    ``margin`` pixels of its last box (empty when none are: the object is lost there; its last box
    is kept, so it is found again if it comes back near it)."""

    margin = 12

    def start_video(self, *, offload: bool = True) -> VideoSession:
        return VideoSession()

    def track(self, session: VideoSession, frame, *, new_ids=(), new_boxes=None) -> TrackStep:
        frame = np.asarray(frame)
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3, frame.shape
        H, W = frame.shape[:2]
        if len(new_ids):
            boxes = torch.as_tensor(new_boxes, dtype=torch.float32).reshape(-1, 4)
            assert len(boxes) == len(new_ids), (len(boxes), len(new_ids))
            for oid, box in zip(new_ids, boxes.round().int().tolist()):
                assert int(oid) not in session.objects, f"object {oid} started twice"
                x0, y0, x1, y1 = box
                patch = frame[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)].reshape(-1, 3)
                colours, counts = np.unique(patch, axis=0, return_counts=True)
                session.objects[int(oid)] = (tuple(int(v) for v in colours[counts.argmax()]), box)
                session.prompted.append((session.frames, int(oid), box))
        ids = sorted(session.objects)
        masks = torch.zeros((len(ids), H, W), dtype=torch.bool)
        m = self.margin
        for k, oid in enumerate(ids):
            colour, (x0, y0, x1, y1) = session.objects[oid]
            near = np.zeros((H, W), bool)
            near[max(y0 - m, 0):max(y1 + m, 0), max(x0 - m, 0):max(x1 + m, 0)] = True
            mask = _color_mask(frame, colour, tol=10) & near
            box = _bbox(mask)
            if box is not None:
                session.objects[oid] = (colour, box)
                masks[k] = torch.from_numpy(mask)
        session.bank.append({oid: session.objects[oid][1] for oid in ids})
        del session.bank[:-session.memory]
        session.frames += 1
        return TrackStep(torch.tensor(ids, dtype=torch.int64), masks, torch.ones(len(ids)))

    def drop(self, session: VideoSession, object_ids) -> None:
        for oid in object_ids:
            del session.objects[int(oid)]
            session.dropped.append(int(oid))
        for entry in session.bank:
            for oid in object_ids:
                entry.pop(int(oid), None)


class ColorDetector(Detector):
    """A detector of solid-coloured shapes: the prompt names colours (``"red. blue"``, from
    :data:`COLORS`); each connected region of a named colour is a box (xyxy, exclusive ends),
    score 0.9 (0.8 for regions under 50 pixels), its phrase the colour name."""

    detections = 0  # detect() calls, over every instance (a test reads it)

    def __init__(self, device="cpu", *, precision: str = "fp32", cache_size: int = 2):
        self.device, self.precision = torch.device(device), precision
        self.model = torch.nn.Identity()
        self.cache = EncodingCache(cache_size)

    @classmethod
    def from_spec(cls, spec, ckpt_path=None, device="cpu", *, progress=True, precision="fp32",
                  cache_size=2, **options):
        load_checkpoint(resolve_checkpoint(spec, ckpt_path, progress=progress))
        return cls(device, precision=precision, cache_size=cache_size)

    def prepare(self, text_prompt, box_threshold, text_threshold):
        from lang_sam.validation import check_prompt, check_threshold

        text = check_prompt(text_prompt)
        box_threshold = check_threshold("box_threshold", box_threshold)
        check_threshold("text_threshold", text_threshold)
        words = [w.strip() for w in text.lower().replace(",", ".").split(".") if w.strip()]
        return [w for w in words if w in COLORS], box_threshold

    def encode_image(self, image, key=None):
        return np.asarray(image)

    def detect(self, features, prepared, *, return_prompts=False) -> Detections:
        from scipy import ndimage

        ColorDetector.detections += 1
        colours, box_threshold = prepared
        boxes, scores, phrases = [], [], []
        for name in colours:
            labels, n = ndimage.label(_color_mask(features, COLORS[name]))
            for region in range(1, n + 1):
                mask = labels == region
                score = 0.9 if mask.sum() >= 50 else 0.8
                if score > box_threshold:
                    boxes.append(_bbox(mask))
                    scores.append(score)
                    phrases.append(name)
        H, W = features.shape[:2]
        return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                          torch.tensor(scores, dtype=torch.float32), phrases, (H, W))


def moving_clip(n: int = 24, size=(96, 128), objects=(), background=(90, 90, 90)):
    """A generated clip: ``n`` ``HxWx3`` uint8 frames (a generator: one frame at a time) of solid
    rectangles on a grey background. ``objects``: ``(colour name, first frame, last frame,
    (x, y) at first frame, (dx, dy) per frame, (w, h))``; later objects are drawn on top."""
    H, W = size
    for i in range(n):
        frame = np.empty((H, W, 3), np.uint8)
        frame[:] = background
        for name, first, last, (x, y), (dx, dy), (w, h) in objects:
            if first <= i <= last:
                x0, y0 = int(round(x + dx * (i - first))), int(round(y + dy * (i - first)))
                frame[max(y0, 0):max(y0 + h, 0), max(x0, 0):max(x0 + w, 0)] = COLORS[name]
        yield frame


# ------------------------------------------------------------------------------------------
# A tracking family of its own: masks that follow the prompt box at a fixed velocity
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoxFollowArch:
    """The toy tracking family's architecture record: how far (dx, dy pixels) a box moves per frame."""

    step: tuple[int, int] = (0, 0)


class BoxFollow(BoxFill, VideoSegmenter):
    """A video segmenter that sees nothing: an object prompted with a box on frame ``f`` is, on
    frame ``f + k``, that box moved by ``k * arch.step``, filled (clipped to the frame). Its own
    random-checkpoint writer stores the step, as a real family stores its weights."""

    def __init__(self, arch: BoxFollowArch, device="cpu", *, precision: str = "fp32", cache_size: int = 2):
        super().__init__(BoxFillArch(), device, precision=precision, cache_size=cache_size)
        self.step = arch.step

    @classmethod
    def from_spec(cls, spec, ckpt_path=None, device="cpu", *, progress=True, precision="fp32",
                  cache_size=2, **options):
        state = load_checkpoint(resolve_checkpoint(spec, ckpt_path, progress=progress))
        step = tuple(int(v) for v in state["step"].tolist())
        return cls(BoxFollowArch(step), device, precision=precision, cache_size=cache_size)

    @classmethod
    def write_random_checkpoint(cls, path, arch, seed=0, **options):
        from lang_sam.models.checkpoints import save_atomic

        return save_atomic({"step": torch.tensor(arch.step)}, path)

    def start_video(self, *, offload: bool = True) -> dict:
        return {"frame": 0, "boxes": {}}  # id -> (first frame, box)

    def track(self, session: dict, frame, *, new_ids=(), new_boxes=None) -> TrackStep:
        H, W = np.asarray(frame).shape[:2]
        idx = session["frame"]
        if len(new_ids):
            boxes = torch.as_tensor(new_boxes, dtype=torch.float32).reshape(-1, 4)
            for oid, box in zip(new_ids, boxes.round().int().tolist()):
                session["boxes"][int(oid)] = (idx, box)
        ids = sorted(session["boxes"])
        masks = torch.zeros((len(ids), H, W), dtype=torch.bool)
        for k, oid in enumerate(ids):
            first, (x0, y0, x1, y1) = session["boxes"][oid]
            dx, dy = ((idx - first) * s for s in self.step)
            masks[k, max(y0 + dy, 0):max(y1 + dy, 0), max(x0 + dx, 0):max(x1 + dx, 0)] = True
        session["frame"] = idx + 1
        return TrackStep(torch.tensor(ids, dtype=torch.int64), masks, torch.ones(len(ids)))

    def drop(self, session: dict, object_ids) -> None:
        for oid in object_ids:
            session["boxes"].pop(int(oid), None)
