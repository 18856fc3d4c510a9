"""detect -> select -> segment, written once.

Every text-prompted entry point runs :func:`run`: :meth:`LangSAM.predict` (with or without
``tile=``; and ``predict_prompt``, ``predict_prompts``, ``predict_batch``), the labelling pipeline
(:func:`lang_sam.labeling.run.label_image`, so ``label_folder`` and ``label_dataset``) and the
server (:meth:`lang_sam.serving.service.ModelService.predict`). What differs between them is
passed in, never copied:

- ``select``: steps from :class:`~lang_sam.results.Detections` to the detections kept (nothing
  for ``predict``; :func:`merge_tiles` for tiles; class mapping and per-class NMS for labelling;
  :func:`top_k` for the server);
- ``tile``: detection on tiles at full resolution and segmentation on tile-sized windows
  (:mod:`lang_sam.tiling`), masks as crops;
- ``collect``: the form masks take as each decoding chunk arrives (:class:`DenseMasks`, the
  default; :class:`CropMasks`; :class:`RleMasks` and :class:`MaskCoverage`, the server's), so no
  consumer holds more than it keeps.

What runs is an :class:`~lang_sam.engines.Engines` (``LangSAM``'s is ``model.engines``): its
detector finds the boxes, and its :meth:`~lang_sam.engines.Engines.decoder` gives the masks of the
kept detections, whatever the segmenter is (box prompts, or a text segmenter such as SAM 3, whose
masks come from its ``masks_for``), in one chunk loop, on the same windows when tiled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence, cast, runtime_checkable

import numpy as np
import torch
from PIL import Image

from lang_sam.engines import Decode, EncodedImage, Engines, prompt_list
from lang_sam.errors import InvalidArgumentError
from lang_sam.masks import CropMask
from lang_sam.results import Detections, Prediction, Tile, TiledPrediction
from lang_sam.tiling import TileSpec, merge_detections, sam_window, to_image_pixels
from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD, ImageInput, as_numpy, to_rgb_pil

__all__ = [
    "run", "detect", "segment", "predict", "prediction", "tiled_prediction", "predict_prompts",
    "predict_batch", "rgb", "Segmented", "Select", "MaskSink", "DenseMasks", "CropMasks",
    "RleMasks", "MaskCoverage", "merge_tiles", "top_k", "TILE_MASK_BYTES", "TileSource", "window_plan",
    "segment_window", "detect_tile",
]

#: A select step: the detections kept of those found (any subset, in any order; may rename phrases).
Select = Callable[[Detections], Detections]
#: ``progress(stage, done, total)``: ``"detect"`` in tiles (1 without tiling), ``"segment"`` in boxes.
Progress = Callable[[str, int, int], None]
#: The tiled path holds about this many bytes of one window's bool masks at once (whole decoding
#: chunks of boxes, at least one), before cutting them to crops.
TILE_MASK_BYTES = 64 * 2**20


@runtime_checkable
class TileSource(Protocol):
    """An image too large to hold, read a window at a time by the tiled path (with ``tile=``):
    :class:`lang_sam.raster.RasterSource`. ``size`` is ``(W, H)``; ``window(box)`` gives the
    window ``(x0, y0, x1, y1)`` (image pixels, ``x1``/``y1`` exclusive) as an RGB PIL image, or
    None when it holds nothing to detect (nodata): that tile is skipped, and a SAM window that is
    None is black."""

    size: tuple[int, int]

    def window(self, box: Tile) -> Image.Image | None: ...


class MaskSink(Protocol):
    """Where the pipeline hands masks, chunk by chunk, in box order. A sink is made as
    ``sink(n, shape)``: ``n`` boxes, each with masks of ``shape`` (``(H, W)``, the pipeline's; a
    caller decoding ``C`` masks per box, as :meth:`LangSAM.segment` with ``multimask_output``, may
    pass ``(C, H, W)``)."""

    def add(self, masks: torch.Tensor) -> None:
        """``(n, *shape)`` bool masks of the next ``n`` boxes."""

    def result(self) -> Any:
        """The masks of every box, in the sink's form."""


class DenseMasks:
    """Masks as one ``(N, *shape)`` bool tensor (``(N, H, W)``: what :meth:`LangSAM.predict`
    returns)."""

    def __init__(self, n: int, image_size: tuple[int, ...]):
        self.masks = torch.zeros((n, *image_size), dtype=torch.bool)
        self.done = 0

    def add(self, masks: torch.Tensor) -> None:
        """Copy the next ``(n, *shape)`` bool masks in."""
        self.masks[self.done:self.done + len(masks)] = masks
        self.done += len(masks)

    def result(self) -> torch.Tensor:
        """The ``(N, *shape)`` bool tensor (rows never added stay False)."""
        return self.masks


class RleMasks:
    """Masks as COCO compressed RLE dicts ``{"size": [H, W], "counts": str}``, each chunk encoded
    as it arrives (only one chunk is ever held densely): ``N`` dicts for ``(H, W)`` masks, ``N``
    lists of ``C`` dicts for ``(C, H, W)`` ones. The same dicts as
    :func:`lang_sam.labeling.formats.masks_to_rle`."""

    def __init__(self, n: int, image_size: tuple[int, ...]):
        self.image_size = (int(image_size[-2]), int(image_size[-1]))
        self.masks: list[Any] = []

    def add(self, masks: torch.Tensor) -> None:
        """Encode the next ``(n, H, W)`` (or ``(n, C, H, W)``) bool masks."""
        flat = [CropMask.from_dense(m > 0).to_rle() for m in as_numpy(masks.reshape(-1, *self.image_size))]
        if masks.ndim == 4:  # one list of C masks per box
            c = masks.shape[1]
            self.masks.extend(flat[i:i + c] for i in range(0, len(flat), c))
        else:
            self.masks.extend(flat)

    def result(self) -> list:
        """``N`` RLE dicts (or ``N`` lists of ``C``), in box order."""
        return self.masks


class MaskCoverage:
    """The pixels covered by at least one, and by at least two, of a stream of ``(H, W)`` masks.

    :func:`lang_sam.utils.draw_image` gives every mask one colour and torchvision blacks out pixels
    under two or more masks, so drawing :meth:`result` equals drawing all the masks, with two
    ``H x W`` buffers instead of ``N``. ``n`` is not needed (a sink is made as ``sink(n, shape)``).
    """

    def __init__(self, n: int, image_size: tuple[int, ...]):
        height, width = int(image_size[-2]), int(image_size[-1])
        self.any = torch.zeros((height, width), dtype=torch.bool)
        self.many = torch.zeros((height, width), dtype=torch.bool)
        self.count = 0

    def add(self, masks: torch.Tensor | np.ndarray) -> None:
        """Add ``(k, H, W)`` (or ``(k, C, H, W)``) bool masks, torch or numpy."""
        masks = torch.as_tensor(masks).reshape(-1, *self.any.shape)
        if not len(masks):
            return
        n = masks.sum(0, dtype=torch.int32)
        self.many |= (n > 1) | (self.any & (n > 0))
        self.any |= n > 0
        self.count += len(masks)

    def result(self) -> torch.Tensor:
        """``(2, H, W)`` bool: covered at least once, covered at least twice (``(0, H, W)`` when no
        mask was added)."""
        both = torch.stack([self.any, self.many])
        return both if self.count else both[:0]


class CropMasks:
    """Masks as ``N`` :class:`~lang_sam.masks.CropMask` trimmed to their True pixels (the
    labelling pipeline's one form, tiled or not)."""

    def __init__(self, n: int, image_size: tuple[int, int]):
        self.masks: list[CropMask] = []

    def add(self, masks: torch.Tensor) -> None:
        self.masks.extend(CropMask.from_dense(m) for m in masks.numpy())

    def result(self) -> list[CropMask]:
        return self.masks


@dataclass
class Segmented:
    """What :func:`run` returns: the kept ``detections``, their ``masks`` in the ``collect`` form
    (crops with ``tile``), SAM's ``iou_scores`` ``(N,)`` float32, and the ``encoded`` image handle
    (None with ``tile``), for a caller that draws on its pixels."""

    detections: Detections
    masks: Any
    iou_scores: torch.Tensor
    encoded: EncodedImage | None = None


#: ``collect(n, shape)``: a new :class:`MaskSink` for ``n`` boxes with masks of ``shape``.
Collect = Callable[[int, tuple[int, int]], MaskSink]


def run(
    engines: Engines,
    image: ImageInput | EncodedImage | TileSource,
    text_prompt: str,
    box_threshold: float = BOX_THRESHOLD,
    text_threshold: float = TEXT_THRESHOLD,
    *,
    select: Sequence[Select] = (),
    tile: TileSpec | None = None,
    collect: Collect = DenseMasks,
    progress: Progress | None = None,
) -> Segmented:
    """Detect what ``text_prompt`` names in ``image``, keep what ``select`` keeps (steps applied
    in order), segment each kept detection.

    ``image``: anything :meth:`Engines.encode` takes (an :class:`~lang_sam.EncodedImage` reuses its
    encodings), or with ``tile`` a :class:`TileSource` (a raster read window by window). With
    ``tile``, ``select`` must merge what neighbouring tiles found twice (include
    :func:`merge_tiles`, after any step that renames phrases); masks are then crops whatever
    ``collect`` is. The prompt and thresholds are checked before any image work.

    Raises:
        InvalidPromptError, InvalidThresholdError: a bad prompt or threshold (before any image work).
        InvalidImageError: ``image`` cannot be read; ``ImageTooThinError`` (one of them): an engine
            cannot take it (or, with ``tile``, one of its tiles), before any detection.
    """
    prepared = engines.prepare(text_prompt, box_threshold, text_threshold)
    if tile is None and isinstance(image, TileSource):
        raise InvalidArgumentError(f"a window source ({type(image).__name__}) is read with tile=, got tile=None")
    image = engines.encode(cast("ImageInput | EncodedImage", image)) if tile is None else _tiled(image)
    _check_sizes(engines, image, tile)
    det, enc = detect(engines, image, prepared, tile=tile, progress=progress)
    for step in select:
        det = step(det)
    masks, iou = segment(engines, image if enc is None else enc, det, prepared, tile=tile,
                         collect=collect, progress=progress)
    return Segmented(det, masks, iou, enc)


def _check_sizes(engines: Engines, image: ImageInput | EncodedImage | TileSource, tile: TileSpec | None) -> None:
    """Refuse, before any detection, an image (or with ``tile``, a tile of it) that an engine's
    resize would make 0 pixels thin (:class:`~lang_sam.errors.ImageTooThinError`); each engine
    checks again what it encodes (``check_image_size``)."""
    W, H = _tiled(image).size
    sizes: dict[tuple[int, int], str | None] = {(H, W): None}  # (h, w) -> the message's subject
    if tile is not None:
        shapes = dict.fromkeys((t[3] - t[1], t[2] - t[0]) for t in tile.grid(W, H))
        sizes = {(h, w): f"a {w}x{h} tile of the {W}x{H} image" for h, w in shapes}
    for (h, w), what in sizes.items():
        engines.check_image_size(h, w, what)


def _report(progress: Progress | None) -> Progress:
    return progress if progress is not None else (lambda stage, done, total: None)


def rgb(image: ImageInput | EncodedImage) -> Image.Image:
    """The RGB PIL image of anything :meth:`Engines.encode` takes (an encoded handle's own).

    Raises:
        InvalidImageError: ``image`` cannot be read as an RGB image.
    """
    return image.image if isinstance(image, EncodedImage) else to_rgb_pil(image)


def _tiled(image: ImageInput | EncodedImage | TileSource) -> Image.Image | TileSource:
    """What the tiled path reads windows of: a :class:`TileSource` as it is, else the RGB image."""
    return image if isinstance(image, TileSource) else rgb(image)


def _window(engines: Engines, image: Image.Image | TileSource, box: Tile) -> EncodedImage:
    """An encode handle of the window ``box`` (x0, y0, x1, y1) of ``image`` (a source's window
    that is None: black)."""
    if isinstance(image, TileSource):
        pil = image.window(box)
        return engines.encode(pil if pil is not None else Image.new("RGB", (box[2] - box[0], box[3] - box[1])))
    whole = tuple(box) == (0, 0, *image.size)
    return engines.encode(image if whole else image.crop(box))


def detect(engines: Engines, image: ImageInput | EncodedImage | TileSource, prepared: Any, *, tile: TileSpec | None = None,
           progress: Progress | None = None) -> tuple[Detections, EncodedImage | None]:
    """The detector's boxes for ``prepared`` (from :meth:`Engines.prepare`) and the encode
    handle of ``image`` (None with ``tile``). With ``tile``, the detector runs on each tile of
    ``tile.grid`` at full resolution, one tile's work held at a time; boxes are mapped to image
    pixels and cut at the tile's inner borders, not merged (``tile_index`` says which tile).

    Raises:
        InvalidImageError: ``image`` cannot be read.
    """
    report = _report(progress)
    if tile is None:
        report("detect", 0, 1)
        enc = engines.encode(cast("ImageInput | EncodedImage", image))
        det = engines.detect(enc, prepared)
        report("detect", 1, 1)
        return det, enc
    src = _tiled(image)
    W, H = src.size
    tiles = tile.grid(W, H)
    parts = []
    report("detect", 0, len(tiles))
    for i, t in enumerate(tiles):
        d = detect_tile(engines, src, t, i, prepared)
        if d is not None:
            parts.append(d)
        report("detect", i + 1, len(tiles))
    return Detections.concat(parts, (H, W), tiles=tiles), None


def detect_tile(engines: Engines, image: Image.Image | TileSource, t: Tile, i: int, prepared: Any
                ) -> Detections | None:
    """The detections of tile ``t`` (number ``i`` of the grid) in image pixels, cut at its inner
    borders, ``tile_index`` ``i``; None for a source's tile with nothing to detect (nodata)."""
    W, H = image.size
    if isinstance(image, TileSource):
        window = image.window(t)
        if window is None:
            return None
        d = engines.detect(engines.encode(window), prepared)
    else:
        d = engines.detect(_window(engines, image, t), prepared)
    return Detections(to_image_pixels(d.boxes, t, (H, W)), d.scores, d.phrases, (H, W),
                      tile_index=torch.full((len(d),), i, dtype=torch.int64))


def segment(engines: Engines, image: ImageInput | EncodedImage | TileSource, detections: Detections | torch.Tensor,
            prepared: Any = None, *, tile: TileSpec | None = None, collect: Collect = DenseMasks,
            progress: Progress | None = None) -> tuple[Any, torch.Tensor]:
    """Masks for ``detections`` (or ``(N, 4)`` float32 xyxy image-pixel boxes alone):
    ``(masks, iou_scores (N,) float32)``, from :meth:`Engines.decoder` (a text segmenter needs the
    ``prepared`` prompt they were detected for; a box segmenter uses the boxes). Without ``tile``,
    on the whole image (``image`` an encode handle or anything ``encode`` takes), in the
    segmenter's decoding chunks, each handed to ``collect(N, (H, W))``; no box, no segmenter work.
    With ``tile``, each box on a window (:func:`lang_sam.tiling.sam_window`), masks as ``N`` crops.

    Raises:
        UnsupportedPromptError: boxes alone (no ``prepared``) for a text segmenter (SAM 3).
    """
    if tile is not None:
        return _segment_tiled(engines, _tiled(image), detections, prepared, tile, progress)
    report = _report(progress)
    enc = engines.encode(cast("ImageInput | EncodedImage", image))
    H, W = enc.pixels.shape[:2]
    det = _as_detections(detections, (H, W))
    n = len(det)
    sink = collect(n, (H, W))
    iou = torch.zeros((n,), dtype=torch.float32)
    report("segment", 0, n)
    if n:
        for start, m, s in _chunks(engines.decoder(enc, prepared), det, engines.boxes_per_chunk(H, W)):
            sink.add(m)
            iou[start:start + len(m)] = s
            report("segment", start + len(m), n)
    else:
        report("segment", 0, 0)  # the stage ends at its total, even an empty one
    return sink.result(), iou


def _as_detections(detections: Detections | torch.Tensor, image_size: tuple[int, int]) -> Detections:
    """Boxes alone as detections (score 0, no phrase)."""
    if isinstance(detections, Detections):
        return detections
    n = len(detections)
    return Detections(detections, torch.zeros((n,), dtype=torch.float32), [""] * n, image_size)


def _chunks(decode: Decode, det: Detections, step: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``(start, masks, scores)`` of ``det`` decoded ``step`` detections at a time (one decoder call each)."""
    n = len(det)
    for start in range(0, n, step):
        m, s = decode(det.take(list(range(start, min(n, start + step)))))
        yield start, m, s


def _segment_tiled(engines: Engines, pil: Image.Image | TileSource, detections: Detections | torch.Tensor,
                   prepared: Any, tile: TileSpec, progress: Progress | None
                   ) -> tuple[list[CropMask], torch.Tensor]:
    """Each detection on its window (:func:`window_plan`), decoded there in the segmenter's
    chunks (:func:`segment_window`); masks as crops in image pixels."""
    report = _report(progress)
    W, H = pil.size
    det = _as_detections(detections, (H, W))
    groups = window_plan(det.boxes, tile.grid(W, H), (H, W), tile.size)
    masks: list[CropMask | None] = [None] * len(det)
    iou = torch.zeros((len(det),), dtype=torch.float32)
    done = 0
    report("segment", 0, len(det))
    for window, idx in groups.items():
        for part, crops, scores in segment_window(engines, pil, window, det, idx, prepared):
            for k, m, sc in zip(part, crops, scores):
                masks[k], iou[k] = m, sc
            done += len(part)
            report("segment", done, len(det))
    return cast("list[CropMask]", masks), iou  # every box is in exactly one group: none is left None


def window_plan(boxes: torch.Tensor, tiles: Sequence[Tile], image_size: tuple[int, int], tile_size: int
                ) -> dict[Tile, list[int]]:
    """The window SAM segments each of ``boxes`` ``(N, 4)`` (xyxy image pixels) on
    (:func:`lang_sam.tiling.sam_window`): window -> the indices of its boxes, windows in the order
    first needed; a window made for a box no tile holds is offered to later boxes too."""
    groups: dict[Tile, list[int]] = {}
    windows = list(tiles)
    for i, box in enumerate(boxes.tolist()):
        window = sam_window(box, windows, image_size, tile_size)
        if window not in groups and window not in tiles:
            windows.append(window)
        groups.setdefault(window, []).append(i)
    return groups


def segment_window(engines: Engines, image: Image.Image | TileSource, window: Tile, det: Detections,
                   idx: Sequence[int], prepared: Any) -> Iterator[tuple[list[int], list[CropMask], torch.Tensor]]:
    """The masks of detections ``idx`` of ``det`` (image pixels) on ``window``, in whole decoding
    chunks of about :data:`TILE_MASK_BYTES`: ``(indices, crops, iou_scores)`` per group, in
    ``idx`` order (one process and a Ray worker run the same)."""
    H, W = det.image_size
    enc = _window(engines, image, window)
    local = det.boxes[list(idx)]
    if window[:2] != (0, 0):
        local = local - torch.tensor([window[0], window[1], window[0], window[1]], dtype=local.dtype)
    h, w = window[3] - window[1], window[2] - window[0]
    step = engines.boxes_per_chunk(h, w)
    # Whole decoding chunks (the same decoding as predict), about TILE_MASK_BYTES of masks.
    group = step * max(1, TILE_MASK_BYTES // (h * w * step))
    decode = engines.decoder(enc, prepared)
    here = Detections(local, det.scores[list(idx)], [det.phrases[i] for i in idx], (h, w))
    for start in range(0, len(idx), group):
        part = list(idx[start:start + group])
        crops: list[CropMask] = [None] * len(part)  # type: ignore[list-item]
        scores = torch.zeros((len(part),), dtype=torch.float32)
        for offset, m, s in _chunks(decode, here.take(list(range(start, start + len(part)))), step):
            for j in range(len(m)):
                crops[offset + j] = CropMask.from_window(m[j].numpy(), window[0], window[1], (H, W))
                scores[offset + j] = s[j]
        yield part, crops, scores


def predict(engines: Engines, image: ImageInput | EncodedImage, text_prompt: str, box_threshold: float = BOX_THRESHOLD,
            text_threshold: float = TEXT_THRESHOLD, *, tile: TileSpec | None = None,
            progress: Progress | None = None) -> Prediction | TiledPrediction:
    """:meth:`LangSAM.predict`: :func:`run` with nothing selected (a :class:`~lang_sam.results.Prediction`,
    dense masks), or with ``tile`` merging what two tiles found twice (:func:`merge_tiles`; a
    :class:`~lang_sam.results.TiledPrediction`, masks as crops).

    Raises:
        What :func:`run` raises.
    """
    if tile is None:
        return prediction(run(engines, image, text_prompt, box_threshold, text_threshold, progress=progress))
    return tiled_prediction(run(engines, rgb(image), text_prompt, box_threshold, text_threshold,
                                select=[merge_tiles(tile)], tile=tile, progress=progress))


def prediction(out: Segmented) -> Prediction:
    """What :meth:`LangSAM.predict` returns for an untiled :func:`run` (dense masks)."""
    det = out.detections
    return Prediction(out.masks, det.boxes, det.phrases, det.scores, iou_scores=out.iou_scores)


def tiled_prediction(out: Segmented) -> TiledPrediction:
    """What :meth:`LangSAM.predict` returns with ``tile=`` (masks as crops, the tile grid)."""
    det = out.detections
    return TiledPrediction(out.masks, det.boxes, det.phrases, det.scores, iou_scores=out.iou_scores,
                           image_size=det.image_size, tiles=det.tiles)


def predict_prompts(engines: Engines, image: ImageInput | EncodedImage, text_prompts: Sequence[str],
                    box_threshold: float = BOX_THRESHOLD, text_threshold: float = TEXT_THRESHOLD) -> list[Prediction]:
    """One :class:`~lang_sam.results.Prediction` per prompt for one image; the image is encoded once.
    Each prompt gets its own detector pass, so phrases never merge across prompts.

    Raises:
        InvalidPromptTypeError: one string instead of a list. InvalidPromptError: an empty list.
    """
    prompts = prompt_list(text_prompts)
    enc = engines.encode(image)
    return [prediction(run(engines, enc, p, box_threshold, text_threshold)) for p in prompts]


def predict_batch(engines: Engines, images: Sequence[ImageInput | EncodedImage], text_prompts: str | Sequence[str],
                  box_threshold: float = BOX_THRESHOLD, text_threshold: float = TEXT_THRESHOLD) -> list[Prediction]:
    """One :class:`~lang_sam.results.Prediction` per image (:meth:`LangSAM.predict` on each):
    ``text_prompts`` is one prompt for every image, or a list with one prompt per image.

    Raises:
        InvalidArgumentError: not as many prompts as images.
        InvalidPromptTypeError, InvalidPromptError: what :meth:`LangSAM.predict` raises for a prompt.
    """
    images = list(images)
    if isinstance(text_prompts, str):
        prompts = [text_prompts] * len(images)
    else:
        prompts = prompt_list(text_prompts)
        if len(prompts) != len(images):
            raise InvalidArgumentError(f"got {len(images)} images but {len(prompts)} prompts")
    return [prediction(run(engines, img, p, box_threshold, text_threshold)) for img, p in zip(images, prompts)]


# --------------------------------------------------------------------------------------------
# Select steps
# --------------------------------------------------------------------------------------------

def merge_tiles(tile: TileSpec) -> Select:
    """Detections of the same phrase that two tiles found, merged into one
    (:func:`lang_sam.tiling.merge_detections` with ``tile.merge`` / ``metric`` / ``iou``)."""

    def step(det: Detections) -> Detections:
        if not len(det):
            return det
        keep, boxes = merge_detections(det.boxes, det.scores, det.phrases, det.tile_index, tile)
        return det.take(keep).replace(boxes=boxes)

    return step


def top_k(k: int) -> Select:
    """At most ``k`` detections: the highest-scoring (ties: the earlier), in their original order."""

    def step(det: Detections) -> Detections:
        if len(det) <= k:
            return det
        order = torch.argsort(det.scores, descending=True, stable=True)[:k]
        return det.take(order.sort().values)

    return step
