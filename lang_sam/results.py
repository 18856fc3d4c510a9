"""The result types, one family: what a detector finds (:class:`Detections`), what a segmenter
gives for SAM's own prompts (:class:`MaskPrediction`) and what the pipeline returns
(:class:`Prediction`, :class:`TiledPrediction`). Each checks its fields when built (lengths,
shapes, dtypes) and raises :class:`~lang_sam.errors.InvalidResultError` naming the field, what was
expected and what arrived, so no consumer re-checks them.

The vocabulary, written once (docs/reference/api.md, "Vocabulary", says the same):

- ``image_size``: ``(H, W)`` ints, the order of numpy and torch shapes, never PIL's ``(W, H)``;
  ``width`` / ``height`` where one of them is meant.
- ``image``: the image parameter's name everywhere (the 2023 methods also take ``image_pil=``).
- ``boxes``: ``(N, 4)`` float32 torch tensor, xyxy in input-image pixels.
- ``phrases``: ``N`` strings, the prompt words each box answers.
- ``scores``: ``(N,)`` float32 in [0, 1], the detector's confidence in each box (GroundingDINO: the
  sigmoid of the box's best token logit). :class:`Prediction` keeps the 2023 name ``logits`` for
  them: despite the name they are probabilities, not logits; ``Prediction.scores`` is the same
  tensor.
- ``iou_scores``: SAM's predicted IoU of each mask, float32.
- ``masks``: ``(N, H, W)`` bool torch tensor in image pixels (dense), or in a
  :class:`TiledPrediction` ``N`` :class:`~lang_sam.masks.CropMask` (crops with offsets).

:class:`Prediction` and :class:`TiledPrediction` unpack alike, as the 2023 4-tuple
``masks, boxes, phrases, logits``; their other fields are attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple, Sequence

import numpy as np
import torch

from lang_sam.errors import InvalidResultError
from lang_sam.masks import CropMask, stack_dense
from lang_sam.reprs import SHOWN, count_text, detections_text, numbers_text, shape_text, value_text

__all__ = ["Detections", "Prediction", "TiledPrediction", "MaskPrediction", "GeneratedMasks", "TrackedFrame", "Tile",
           "MASK_KINDS", "ServedMasks", "ServedPrediction", "ServedSegmentation", "ServedTracks"]

#: ``(x0, y0, x1, y1)`` of a tile or window in image pixels, ``x1``/``y1`` exclusive.
Tile = tuple[int, int, int, int]


def _fail(result: str, name: str, expected: str, got: str):
    raise InvalidResultError(f"{result}.{name}: expected {expected}, got {got}",
                             result=result, field=name, expected=expected, got=got)


def _tensor(result: str, name: str, value: Any, n: int | None, *, trailing: tuple = (),
            kind: str = "float") -> int:
    """Check a torch tensor of shape ``(n, *trailing)`` (``n`` None: any) and dtype ``kind``
    ("float", "bool", "int"); return its first dimension."""
    want = f"({'N' if n is None else n}{''.join(', ' + str(t) for t in trailing)}) {kind} torch tensor"
    if not isinstance(value, torch.Tensor):
        _fail(result, name, want, value_text(value))
    ok_dtype = {"float": value.is_floating_point(), "bool": value.dtype == torch.bool,
                "int": not value.is_floating_point() and value.dtype != torch.bool}[kind]
    shape = tuple(value.shape)
    ok_shape = len(shape) == 1 + len(trailing) and (n is None or shape[0] == n) and all(
        t is None or s == t for s, t in zip(shape[1:], trailing))
    if not (ok_dtype and ok_shape):
        _fail(result, name, want, value_text(value))
    return shape[0]


def _phrases(result: str, value: Any, n: int) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        _fail(result, "phrases", f"a list of {n} strings", value_text(value))
    value = list(value)
    if len(value) != n or not all(isinstance(p, str) for p in value):
        kinds = sorted({type(p).__name__ for p in value})
        _fail(result, "phrases", f"a list of {n} strings", f"{len(value)} items of {kinds}")
    return value


def _image_size(result: str, value: Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in value)
        if (h, w) != tuple(value) or h < 0 or w < 0:
            raise ValueError
    except (TypeError, ValueError):
        _fail(result, "image_size", "(H, W) non-negative ints", repr(value))
    return h, w


@dataclass(frozen=True, repr=False, eq=False)
class Detections:
    """What a detector found in one image for one prompt: ``N`` boxes, not segmented yet.

    - ``boxes``: ``(N, 4)`` float32 tensor, xyxy in input-image pixels;
    - ``scores``: ``(N,)`` float32 tensor in [0, 1], the detector's confidence in each box;
    - ``phrases``: ``N`` strings (after a class mapping, the class names);
    - ``image_size``: ``(H, W)`` of the image the boxes are in;
    - ``tile_index``: with sliced inference, ``(N,)`` int64, the tile (in ``tiles``) each box came
      from; ``tiles``: that grid, ``(x0, y0, x1, y1)`` each. ``None`` / ``()`` otherwise.

    Raises:
        InvalidResultError: a field of the wrong type, shape, dtype or length.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    phrases: list[str]
    image_size: tuple[int, int]
    tile_index: torch.Tensor | None = None
    tiles: tuple[Tile, ...] = field(default=())

    def __post_init__(self) -> None:
        n = _tensor("Detections", "boxes", self.boxes, None, trailing=(4,))
        _tensor("Detections", "scores", self.scores, n)
        object.__setattr__(self, "phrases", _phrases("Detections", self.phrases, n))
        object.__setattr__(self, "image_size", _image_size("Detections", self.image_size))
        if self.tile_index is not None:
            _tensor("Detections", "tile_index", self.tile_index, n, kind="int")
        object.__setattr__(self, "tiles", tuple(tuple(int(v) for v in t) for t in self.tiles))

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> "Detections":
        """No detection in an image of ``image_size`` ``(H, W)``."""
        return cls(torch.zeros((0, 4), dtype=torch.float32), torch.zeros((0,), dtype=torch.float32),
                   [], image_size)

    @classmethod
    def concat(cls, parts: Sequence["Detections"], image_size: tuple[int, int], *,
               tiles: Sequence[Tile] = ()) -> "Detections":
        """``parts`` one after another (each part's ``tile_index`` kept, if all have one)."""
        if not parts:
            return replace(cls.empty(image_size), tiles=tuple(tiles),
                           tile_index=torch.zeros((0,), dtype=torch.int64) if tiles else None)
        index = [p.tile_index for p in parts]
        return cls(
            torch.cat([p.boxes for p in parts]).to(torch.float32),
            torch.cat([p.scores for p in parts]).to(torch.float32),
            [phrase for p in parts for phrase in p.phrases], image_size,
            tile_index=torch.cat([i for i in index if i is not None]) if all(i is not None for i in index) else None,
            tiles=tuple(tiles),
        )

    def __len__(self) -> int:
        return len(self.phrases)

    def take(self, index: Any) -> "Detections":
        """The detections at ``index`` (ints, in the order given: a list, numpy or torch array)."""
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64).reshape(-1))
        return replace(
            self, boxes=self.boxes[idx].reshape(-1, 4), scores=self.scores[idx].reshape(-1),
            phrases=[self.phrases[i] for i in idx.tolist()],
            tile_index=None if self.tile_index is None else self.tile_index[idx].reshape(-1),
        )

    def replace(self, **changes: Any) -> "Detections":
        """A copy with ``changes`` (checked like any new result)."""
        return replace(self, **changes)

    def __repr__(self) -> str:
        H, W = self.image_size
        tiles = f" from {count_text(len(self.tiles), 'tile')}" if self.tiles else ""
        found = ": " + detections_text(self.phrases, self.scores) if len(self) else ""
        return f"Detections({count_text(len(self), 'box')} in a {W}x{H} image{tiles}{found})"


class _MaskedFields(NamedTuple):
    masks: Any
    boxes: torch.Tensor
    phrases: list[str]
    logits: torch.Tensor


if TYPE_CHECKING:
    # What a type checker sees: the same four fields, ``masks`` typed per result (a NamedTuple
    # field's type cannot be narrowed in a subclass, and a generic NamedTuple needs Python 3.11).
    class _PredictionFields(NamedTuple):
        masks: torch.Tensor
        boxes: torch.Tensor
        phrases: list[str]
        logits: torch.Tensor

    class _TiledPredictionFields(NamedTuple):
        masks: list[CropMask]
        boxes: torch.Tensor
        phrases: list[str]
        logits: torch.Tensor
else:
    _PredictionFields = _TiledPredictionFields = _MaskedFields


def _check_masked(self: _PredictionFields | _TiledPredictionFields, result: str, iou_scores: Any) -> int:
    n = _tensor(result, "boxes", self.boxes, None, trailing=(4,))
    _phrases(result, self.phrases, n)
    _tensor(result, "logits", self.logits, n)
    if iou_scores is not None:
        _tensor(result, "iou_scores", iou_scores, n)
    return n


class Prediction(_PredictionFields):
    """What :meth:`LangSAM.predict` returns; unpacks as the 2023 ``masks, boxes, phrases, logits``.

    - ``masks``: ``(N, H, W)`` bool tensor, one mask per box, in input-image pixels;
    - ``boxes``: ``(N, 4)`` float32 tensor, xyxy in input-image pixels;
    - ``phrases``: ``N`` strings, the prompt words each box answers;
    - ``logits``: ``(N,)`` float32 tensor, the detector's score of each box: the 2023 name, but
      probabilities in [0, 1] (each box's best token sigmoid), not logits. ``scores`` is the same.

    Not part of the tuple (so the 2023 4-way unpacking keeps working):

    - ``iou_scores``: ``(N,)`` float32 tensor, SAM's predicted IoU of each mask, or None.

    Raises:
        InvalidResultError: a field of the wrong type, shape, dtype or length.
    """

    iou_scores: torch.Tensor | None

    def __new__(cls, masks, boxes, phrases, logits, iou_scores=None):
        self = super().__new__(cls, masks, boxes, list(phrases) if not isinstance(phrases, str) else phrases,
                               logits)
        n = _check_masked(self, "Prediction", iou_scores)
        _tensor("Prediction", "masks", masks, n, trailing=(None, None), kind="bool")
        self.iou_scores = iou_scores
        return self

    def __getnewargs_ex__(self):  # pickle and copy rebuild (and re-check) it with every field
        return tuple(self), {"iou_scores": self.iou_scores}

    @property
    def scores(self) -> torch.Tensor:
        """The detector's scores: ``logits`` under the name the rest of the library uses."""
        return self.logits

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        h, w = self.masks.shape[-2:]
        return int(h), int(w)

    def to_supervision(self, classes: Sequence[str] | None = None, *, compact: bool | None = None):
        """These detections as a ``supervision.Detections`` (``pip install "supervision>=0.28"``).

        ``xyxy`` float32 boxes, ``mask`` ``(N, H, W)`` bool (``compact=True``: an
        ``sv.CompactMask``), ``confidence`` the ``logits``, ``class_id`` each phrase's index among
        the distinct phrases in order of first appearance, or in ``classes`` (a list of class
        names; a phrase not in it raises :class:`~lang_sam.errors.InvalidClassesError`),
        ``data["class_name"]`` the phrases, ``data["iou_score"]`` the ``iou_scores`` when set.
        See :func:`lang_sam.interop.to_supervision`.
        """
        from lang_sam.interop import to_supervision

        return to_supervision(
            self.masks, self.boxes, self.phrases, self.logits, image_size=self.image_size,
            iou_scores=self.iou_scores, classes=classes, compact=compact,
        )

    def __repr__(self) -> str:
        """One line, whatever N: the count, image size, the first phrases and scores, shapes."""
        n = len(self.phrases)
        H, W = self.image_size
        return (
            f"Prediction({count_text(n, 'detection')} on a {W}x{H} image"
            f"{': ' + detections_text(self.phrases, self.logits) if n else ''}; masks {shape_text(self.masks)}, "
            f"boxes {shape_text(self.boxes)} xyxy px)"
        )


class TiledPrediction(_TiledPredictionFields):
    """What :meth:`LangSAM.predict` returns with ``tile=``; unpacks as ``masks, boxes, phrases, logits``,
    as :class:`Prediction` does, in full-image pixels.

    - ``masks``: ``N`` :class:`~lang_sam.masks.CropMask` (a crop and its offset: memory is the
      objects' size, not ``N x H x W``); :meth:`dense` gives the ``(N, H, W)`` bool tensor;
    - ``boxes``, ``phrases``, ``logits`` (the detector's scores, also ``scores``), ``iou_scores``:
      as in :class:`Prediction`;
    - ``image_size``: ``(H, W)``; ``tiles``: the grid detected on, ``(x0, y0, x1, y1)`` each.

    Raises:
        InvalidResultError: a field of the wrong type, shape, dtype or length.
    """

    iou_scores: torch.Tensor | None
    image_size: tuple[int, int]
    tiles: list[Tile]

    def __new__(cls, masks, boxes, phrases, logits, *, image_size, iou_scores=None, tiles=()):
        self = super().__new__(cls, list(masks) if isinstance(masks, (list, tuple)) else masks, boxes,
                               list(phrases) if not isinstance(phrases, str) else phrases, logits)
        n = _check_masked(self, "TiledPrediction", iou_scores)
        size = _image_size("TiledPrediction", image_size)
        if not isinstance(self.masks, list) or len(self.masks) != n:
            _fail("TiledPrediction", "masks", f"a list of {n} CropMask", value_text(self.masks))
        wrong = [i for i, m in enumerate(self.masks) if not isinstance(m, CropMask) or m.image_size != size]
        if wrong:
            m = self.masks[wrong[0]]
            got = (f"a CropMask of a {m.image_size} image" if isinstance(m, CropMask) else value_text(m))
            _fail("TiledPrediction", f"masks[{wrong[0]}]", f"a CropMask of a {size} image", got)
        self.iou_scores, self.image_size = iou_scores, size
        self.tiles = [tuple(int(v) for v in t) for t in tiles]
        return self

    def __getnewargs_ex__(self):  # pickle and copy rebuild (and re-check) it with every field
        return tuple(self), {"iou_scores": self.iou_scores, "image_size": self.image_size, "tiles": self.tiles}

    @property
    def scores(self) -> torch.Tensor:
        """The detector's scores: ``logits`` under the name the rest of the library uses."""
        return self.logits

    def dense(self) -> torch.Tensor:
        """``(N, H, W)`` bool masks (``N * H * W`` bytes: ask only when that fits)."""
        return torch.from_numpy(stack_dense(self.masks, self.image_size))

    def to_supervision(self, classes: Sequence[str] | None = None, *, compact: bool | None = None):
        """These detections as a ``supervision.Detections`` (``pip install "supervision>=0.28"``),
        their masks as an ``sv.CompactMask`` made from the crops, never a full-size array
        (``compact=False``: ``(N, H, W)`` bool). Other fields as
        :meth:`lang_sam.Prediction.to_supervision`; see :func:`lang_sam.interop.to_supervision`."""
        from lang_sam.interop import to_supervision

        return to_supervision(
            self.masks, self.boxes, self.phrases, self.logits, image_size=self.image_size,
            iou_scores=self.iou_scores, classes=classes, compact=compact,
        )

    def __repr__(self) -> str:
        H, W = self.image_size
        n = len(self.phrases)
        crop_mb = sum(m.nbytes for m in self.masks) / 2**20
        return (f"TiledPrediction({count_text(n, 'detection')} on a {W}x{H} image from "
                f"{count_text(len(self.tiles), 'tile')}"
                f"{': ' + detections_text(self.phrases, self.logits) if n else ''}; masks as crops, {crop_mb:.1f} MiB)")


class _MaskFields(NamedTuple):
    masks: torch.Tensor
    iou_scores: torch.Tensor
    low_res_logits: torch.Tensor | None


class MaskPrediction(_MaskFields):
    """What :meth:`LangSAM.segment` returns for SAM's own prompts (``B`` prompts, ``C`` masks each).

    - ``masks``: ``(B, C, H, W)`` bool tensor in input-image pixels;
    - ``iou_scores``: ``(B, C)`` float32, SAM's predicted IoU of each mask;
    - ``low_res_logits``: ``(B, C, 256, 256)`` float32 mask logits (to refine a mask: pass one back
      as ``mask_input``), or None.

    Raises:
        InvalidResultError: a field of the wrong type, shape, dtype or length.
    """

    def __new__(cls, masks, iou_scores, low_res_logits=None):
        self = super().__new__(cls, masks, iou_scores, low_res_logits)
        b = _tensor("MaskPrediction", "masks", masks, None, trailing=(None, None, None), kind="bool")
        c = int(masks.shape[1])
        _tensor("MaskPrediction", "iou_scores", iou_scores, b, trailing=(c,))
        if low_res_logits is not None:
            _tensor("MaskPrediction", "low_res_logits", low_res_logits, b, trailing=(c, None, None))
        return self

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        h, w = self.masks.shape[-2:]
        return int(h), int(w)

    def __repr__(self) -> str:
        """One line, whatever B: prompts x masks, image size, the first prompts' scores, shapes."""
        b, c = (int(d) for d in self.masks.shape[:2])
        rows = self.iou_scores.reshape(b, -1)[:SHOWN].tolist() if b else []
        if c == 1:
            scores = numbers_text([r[0] for r in rows])
        else:
            scores = ", ".join(f"[{numbers_text(r)}]" for r in rows)
        more = f", ... (+{b - SHOWN} more)" if b > SHOWN else ""
        low = "None" if self.low_res_logits is None else shape_text(self.low_res_logits)
        H, W = self.image_size
        return (
            f"MaskPrediction({count_text(b, 'prompt')} x {count_text(c, 'mask')} "
            f"on a {W}x{H} image; iou_scores {scores or '-'}{more}; "
            f"masks {shape_text(self.masks)}, low_res_logits {low})"
        )


@dataclass(frozen=True, repr=False, eq=False)
class GeneratedMasks:
    """What :meth:`LangSAM.generate` returns: every mask SAM's automatic mask generator kept in one
    image ("segment everything"), ``N`` of them, in the generator's order.

    - ``masks``: ``(N, H, W)`` bool tensor in image pixels;
    - ``boxes``: ``(N, 4)`` float32 tensor, xyxy image pixels, each mask's bounding box as SAM's
      generator (and ``torchvision.ops.masks_to_boxes``) gives it: ``x1``/``y1`` are the last
      column/row of the mask (inclusive); an empty mask's box is ``(0, 0, 0, 0)``.
      :meth:`edge_boxes` gives them in the writers' convention (``x1``/``y1`` exclusive);
    - ``areas``: ``(N,)`` int64, True pixels of each mask;
    - ``iou_scores``: ``(N,)`` float32, SAM's predicted IoU of each mask;
    - ``stability_scores``: ``(N,)`` float32, the IoU of the mask thresholded at
      ``mask_threshold + offset`` and at ``mask_threshold - offset``;
    - ``point_coords``: ``(N, 2)`` float32 xy image pixels, the grid point that prompted the mask;
    - ``crop_boxes``: ``(N, 4)`` float32 xyxy image pixels (``x1``/``y1`` exclusive), the crop of
      the image the mask was found on (the whole image, or one of ``crop_n_layers``' crops);
    - ``image_size``: ``(H, W)``.

    :meth:`records` gives SAM's own output, the list of dicts of
    ``SamAutomaticMaskGenerator.generate``.

    Raises:
        InvalidResultError: a field of the wrong type, shape, dtype or length.
    """

    masks: torch.Tensor
    boxes: torch.Tensor
    areas: torch.Tensor
    iou_scores: torch.Tensor
    stability_scores: torch.Tensor
    point_coords: torch.Tensor
    crop_boxes: torch.Tensor
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        size = _image_size("GeneratedMasks", self.image_size)
        object.__setattr__(self, "image_size", size)
        n = _tensor("GeneratedMasks", "masks", self.masks, None, trailing=size, kind="bool")
        _tensor("GeneratedMasks", "boxes", self.boxes, n, trailing=(4,))
        _tensor("GeneratedMasks", "areas", self.areas, n, kind="int")
        _tensor("GeneratedMasks", "iou_scores", self.iou_scores, n)
        _tensor("GeneratedMasks", "stability_scores", self.stability_scores, n)
        _tensor("GeneratedMasks", "point_coords", self.point_coords, n, trailing=(2,))
        _tensor("GeneratedMasks", "crop_boxes", self.crop_boxes, n, trailing=(4,))

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> "GeneratedMasks":
        """No mask in an image of ``image_size`` ``(H, W)``."""
        f = torch.zeros
        return cls(f((0, *image_size), dtype=torch.bool), f((0, 4)), f((0,), dtype=torch.int64), f((0,)),
                   f((0,)), f((0, 2)), f((0, 4)), image_size)

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def edge_boxes(self) -> torch.Tensor:
        """``(N, 4)`` float32 xyxy, each mask's box with ``x1``/``y1`` exclusive (the pixel edges, the
        export writers' convention: :func:`lang_sam.tracking.mask_boxes`, COCO's ``toBbox``), where
        ``boxes`` keeps SAM's inclusive one. An empty mask's box is ``(0, 0, 0, 0)``."""
        from lang_sam.tracking import mask_boxes

        return mask_boxes(self.masks)

    def crops(self) -> list[CropMask]:
        """The masks as :class:`~lang_sam.masks.CropMask` trimmed to their True pixels (the form
        the labelling writers read)."""
        return [CropMask.from_dense(m) for m in self.masks.numpy()]

    def records(self, output_mode: str = "binary_mask") -> list[dict]:
        """``SamAutomaticMaskGenerator.generate``'s output: one dict per mask, with
        ``segmentation`` (``(H, W)`` bool numpy array; ``output_mode="coco_rle"``: a COCO RLE dict
        with ``str`` counts), ``area`` (int), ``bbox`` (``[x, y, w, h]`` floats: the box's
        ``x0, y0, x1 - x0, y1 - y0``), ``predicted_iou``, ``point_coords`` (``[[x, y]]``),
        ``stability_score`` and ``crop_box`` (``[x, y, w, h]``).

        Raises:
            InvalidResultError: ``output_mode`` is not ``"binary_mask"`` or ``"coco_rle"``.
        """
        if output_mode not in ("binary_mask", "coco_rle"):
            _fail("GeneratedMasks", "records(output_mode)", "'binary_mask' or 'coco_rle'", repr(output_mode))

        def xywh(b: list[float]) -> list[float]:
            return [b[0], b[1], b[2] - b[0], b[3] - b[1]]

        out = []
        for i in range(len(self)):
            mask = self.masks[i].numpy()
            segmentation: Any
            if output_mode == "coco_rle":
                segmentation = CropMask.from_dense(mask).to_rle()
            else:
                segmentation = mask
            out.append({
                "segmentation": segmentation,
                "area": int(self.areas[i]),
                "bbox": xywh(self.boxes[i].tolist()),
                "predicted_iou": float(self.iou_scores[i]),
                "point_coords": [self.point_coords[i].tolist()],
                "stability_score": float(self.stability_scores[i]),
                "crop_box": xywh(self.crop_boxes[i].tolist()),
            })
        return out

    def __repr__(self) -> str:
        H, W = self.image_size
        n = len(self)
        scores = f": iou_scores {numbers_text(self.iou_scores[:SHOWN].tolist())}" if n else ""
        more = f", ... (+{n - SHOWN} more)" if n > SHOWN else ""
        return (f"GeneratedMasks({count_text(n, 'mask')} on a {W}x{H} image{scores}{more}; "
                f"masks {shape_text(self.masks)}, boxes {shape_text(self.boxes)} xyxy px)")


class TrackedFrame(NamedTuple):
    """One frame of :meth:`LangSAM.predict_video`: the objects tracked on it (``N`` of them).

    - ``frame_index``: int, 0-based position in the video;
    - ``masks``: ``(N, H, W)`` bool tensor in frame pixels;
    - ``boxes``: ``(N, 4)`` float32 tensor, xyxy frame pixels, each mask's bounding box;
    - ``track_ids``: ``(N,)`` int64 tensor, stable across frames, from 1, never reused in a video;
    - ``scores``: ``(N,)`` float32, the detector's score of the detection that started each track
      (the text segmenter's own score for engines that detect on every frame);
    - ``phrases``: ``N`` strings, the prompt words each track answers;
    - ``image_size``: ``(H, W)`` of the frame.
    """

    frame_index: int
    masks: torch.Tensor
    boxes: torch.Tensor
    track_ids: torch.Tensor
    scores: torch.Tensor
    phrases: list[str]
    image_size: tuple[int, int]

    @classmethod
    def checked(cls, frame_index, masks, boxes, track_ids, scores, phrases, image_size) -> "TrackedFrame":
        """Build one, checking every field.

        Raises:
            InvalidResultError: a field of the wrong type, shape, dtype or length.
        """
        size = _image_size("TrackedFrame", image_size)
        n = _tensor("TrackedFrame", "masks", masks, None, trailing=size, kind="bool")
        _tensor("TrackedFrame", "boxes", boxes, n, trailing=(4,))
        _tensor("TrackedFrame", "track_ids", track_ids, n, kind="int")
        _tensor("TrackedFrame", "scores", scores, n)
        return cls(int(frame_index), masks, boxes, track_ids, scores,
                   _phrases("TrackedFrame", phrases, n), size)

    def __repr__(self) -> str:
        H, W = self.image_size
        ids = ", ".join(str(int(i)) for i in self.track_ids[:SHOWN])
        more = ", ..." if len(self.track_ids) > SHOWN else ""
        return (f"TrackedFrame(frame {self.frame_index}, {count_text(len(self.phrases), 'track')} on a "
                f"{W}x{H} frame{': ids ' + ids + more if len(self.phrases) else ''})")


# What the server and the demo answer (:class:`lang_sam.serving.service.ModelService`).

#: The forms a served answer's masks take (:class:`ServedMasks`).
MASK_KINDS = ("dense", "rle", "overlay")


@dataclass(frozen=True, repr=False, eq=False)
class ServedMasks:
    """A served answer's masks in the one form asked for, ``kind`` (the result holding it checks
    ``data`` against its count and size): ``"dense"``, :attr:`dense`, a bool tensor ``(N, H, W)``
    or ``(B, C, H, W)``; ``"rle"``, :attr:`rle`, ``N`` COCO RLE dicts ``{"size": [H, W], "counts":
    str}`` (or ``B`` lists of ``C``); ``"overlay"``, :attr:`coverage`, ``(2, H, W)`` bool, the pixels
    under one mask or more and under two or more (``(0, H, W)`` with none), which
    :func:`lang_sam.utils.draw_image` draws as the masks (:class:`lang_sam.pipeline.MaskCoverage`).

    Raises:
        InvalidResultError: ``kind`` not one of :data:`MASK_KINDS`; an accessor of another kind read.
    """

    kind: str
    data: Any

    def __post_init__(self) -> None:
        if self.kind not in MASK_KINDS:
            _fail("ServedMasks", "kind", f"one of {MASK_KINDS}", repr(self.kind))

    def _as(self, kind: str) -> Any:
        if self.kind != kind:
            _fail("ServedMasks", kind, f"masks of kind {kind!r}", f"kind {self.kind!r}")
        return self.data

    dense = property(lambda self: self._as("dense"), doc="The ``dense`` bool tensor.")
    rle = property(lambda self: self._as("rle"), doc="The ``rle`` dicts (JSON-able).")
    coverage = property(lambda self: self._as("overlay"), doc="The ``overlay`` bool tensor.")


def _served(result: str, masks: Any, n: int, shape: tuple[int, ...]) -> None:
    """Check that ``masks`` holds ``n`` masks of ``shape``, ``(H, W)`` or ``(C, H, W)``."""
    if not isinstance(masks, ServedMasks):
        _fail(result, "masks", "a ServedMasks", value_text(masks))
    if masks.kind != "rle":
        dense = masks.kind == "dense"
        _tensor(result, "masks", masks.data, n if dense else 2 * (n > 0), trailing=shape if dense else shape[-2:],
                kind="bool")
        return
    c, items, size = (shape[0] if len(shape) == 3 else None), masks.data, list(shape[-2:])
    groups = [g for g in items if c is None or _listed(g, dict) and len(g) == c] if _listed(items, object) else []
    if len(groups) != n or len(items) != n or not all(
            isinstance(d, dict) and list(d.get("size", ())) == size and isinstance(d.get("counts"), str)
            for d in (groups if c is None else [d for g in groups for d in g])):
        _fail(result, "masks", f"{n} RLE dicts of size {size}" + (f", {c} per prompt" if c else ""), repr(items)[:80])


def _listed(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) for v in value)


@dataclass(frozen=True, repr=False, eq=False)
class ServedPrediction:
    """A text prediction of :meth:`lang_sam.serving.service.ModelService.predict`: ``masks``
    (:class:`ServedMasks`) of the ``N`` kept boxes; ``boxes``, ``phrases``, ``logits`` as in
    :class:`Prediction`; ``found``, the detections before the server's cap (:attr:`dropped` ``=
    found - N`` were the lowest-scoring); ``image_size`` ``(H, W)``; ``sam_type``, ``gdino_type``.

    Raises:
        InvalidResultError: a field of the wrong type, shape, dtype or length.
    """

    masks: ServedMasks
    boxes: torch.Tensor
    phrases: list[str]
    logits: torch.Tensor
    found: int
    image_size: tuple[int, int]
    sam_type: str
    gdino_type: str

    def __post_init__(self) -> None:
        r = "ServedPrediction"
        n = _tensor(r, "boxes", self.boxes, None, trailing=(4,))
        object.__setattr__(self, "phrases", _phrases(r, self.phrases, n))
        _tensor(r, "logits", self.logits, n)
        object.__setattr__(self, "image_size", _image_size(r, self.image_size))
        _served(r, self.masks, n, self.image_size)
        if isinstance(self.found, bool) or not isinstance(self.found, int) or self.found < n:
            _fail(r, "found", f"an int >= {n} (the kept detections)", repr(self.found))

    @property
    def dropped(self) -> int:
        """Detections left out by the cap (the lowest-scoring ones)."""
        return self.found - len(self.phrases)


@dataclass(frozen=True, repr=False, eq=False)
class ServedSegmentation:
    """SAM's answer to ``B`` prompts, of :meth:`lang_sam.serving.service.ModelService.segment`:
    ``masks`` (:class:`ServedMasks`, ``dense`` ``(B, C, H, W)`` or ``rle``; ``C`` 3 with
    ``multimask_output``, else 1); ``iou_scores`` ``(B, C)`` float32; ``low_res_logits`` ``(B, C,
    h, w)`` float32 (to feed back as ``mask_input``) or None; ``image_size`` ``(H, W)``; ``sam_type``.

    Raises:
        InvalidResultError: a field of the wrong type, shape, dtype or length.
    """

    masks: ServedMasks
    iou_scores: torch.Tensor
    low_res_logits: torch.Tensor | None
    image_size: tuple[int, int]
    sam_type: str

    def __post_init__(self) -> None:
        r = "ServedSegmentation"
        b = _tensor(r, "iou_scores", self.iou_scores, None, trailing=(None,))
        object.__setattr__(self, "image_size", _image_size(r, self.image_size))
        if getattr(self.masks, "kind", None) == "overlay":
            _fail(r, "masks", "dense or rle masks", "overlay masks")
        c = int(self.iou_scores.shape[1])
        _served(r, self.masks, b, (c, *self.image_size))
        if self.low_res_logits is not None:
            _tensor(r, "low_res_logits", self.low_res_logits, b, trailing=(c, None, None))


@dataclass(frozen=True, repr=False, eq=False)
class ServedTracks:
    """A video tracked by :meth:`lang_sam.serving.service.ModelService.track`, as
    :class:`lang_sam.labeling.video_formats.TrackRows` builds it: ``frames``, one dict per frame
    (``frame_index``, ``track_ids``, ``boxes`` xyxy frame pixels with ``x1``/``y1`` exclusive,
    ``scores``, ``phrases``, ``masks`` COCO RLE when asked); ``tracks``, one dict per track;
    ``mot``, the MOTChallenge text; ``overlay``, the overlay mp4's path or None; ``image_size``
    ``(H, W)``; ``fps`` (None: unknown); ``sam_type``, ``gdino_type``; ``frame_count_declared``,
    the count the container's header announces (or None); ``warnings``, sentences for the client.

    Raises:
        InvalidResultError: a field of the wrong type.
    """

    frames: list[dict]
    tracks: list[dict]
    mot: str
    overlay: Any
    image_size: tuple[int, int]
    fps: float | None
    sam_type: str
    gdino_type: str
    frame_count_declared: int | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        fps, count = self.fps, self.frame_count_declared
        for name, want, ok in [
                ("frames", "a list of dicts", _listed(self.frames, dict)),
                ("tracks", "a list of dicts", _listed(self.tracks, dict)),
                ("mot", "MOT text (str)", isinstance(self.mot, str)),
                ("fps", "a number or None", fps is None or isinstance(fps, (int, float)) and not isinstance(fps, bool)),
                ("frame_count_declared", "an int >= 0 or None",
                 count is None or isinstance(count, int) and not isinstance(count, bool) and count >= 0),
                ("warnings", "a list of strings", _listed(self.warnings, str))]:
            if not ok:
                _fail("ServedTracks", name, want, value_text(getattr(self, name)))
        object.__setattr__(self, "image_size", _image_size("ServedTracks", self.image_size))
