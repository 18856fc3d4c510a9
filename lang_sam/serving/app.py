"""The web demo (Gradio): the original's controls plus the GroundingDINO type, click refinement,
and a video tab (upload a short clip and a prompt, watch the tracked overlay: :func:`track_clip`).

    lang-sam app --port 7860        # or: python -m lang_sam app --port 7860

Install with ``pip install "lang-sam[app]"``. Also mounted at ``/gradio`` by the HTTP server.

After a text prediction, a click on the result adds a point to the detection under it (the one whose
mask and box hold the point, else whose mask, else whose box; the smallest box wins): a foreground point, or a background one
when "background" is selected. SAM re-runs for that detection with its box, all its points and its
previous low-resolution logits (:meth:`~lang_sam.serving.service.ModelService.segment`; the image's
encoding is reused, found by content). "Reset clicks" restores the text result. The functions
:func:`segment`, :func:`click` and :func:`reset` do the work and know nothing of Gradio.
"""

# No "from __future__ import annotations": Gradio finds the click handler's gr.SelectData
# parameter by its annotation at run time.
import hmac
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from lang_sam.pipeline import MaskCoverage
from lang_sam.serving.guards import FramingHeaderGuard, UploadOnlyGuard, gradio_upload_dir, inside
from lang_sam.serving.service import (
    DEFAULT_MAX_BODY_MB,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    MAX_PROMPT_CHARS,
    ModelService,
    body_limit_bytes,
    public_error,
    read_upload,
)
from lang_sam.validation import BOX_THRESHOLD, TEXT_THRESHOLD
from lang_sam.video import DETECT_EVERY

logger = logging.getLogger(__name__)

__all__ = ["build_demo", "segment", "click", "reset", "render", "table_rows", "demo_auth", "DemoState", "Detection",
           "HEADERS", "demo_options", "launch", "track_clip", "TRACK_HEADERS",
           "TrackFolders"]

ASSETS = Path(__file__).resolve().parents[2] / "assets"
EXAMPLES = [("cat.jpg", "cat"), ("coffee.jpg", "cup. spoon"), ("astronaut.jpg", "person. flag. helmet")]
HEADERS = ["phrase", "score", "x0", "y0", "x1", "y1", "fg clicks", "bg clicks"]
FOREGROUND, BACKGROUND = "foreground", "background"


@dataclass
class Detection:
    """One detection of the text result and the clicks that refined it.

    ``box`` xyxy pixels; ``text_mask`` / ``mask``: COCO RLE of the text result's mask and of the
    current one; ``points``: ``(x, y, label)`` clicks in pixels, label 1 foreground / 0 background;
    ``low_res``: SAM's ``(256, 256)`` float32 logits of the current mask (None until the first
    click); ``sam_score``: SAM's predicted IoU of the current mask after a click.
    """

    phrase: str
    score: float
    box: list[float]
    text_mask: dict
    mask: dict
    points: list[tuple[float, float, int]] = field(default_factory=list)
    low_res: np.ndarray | None = None
    sam_score: float | None = None


@dataclass
class DemoState:
    """A page's session: the image (``HxWx3`` uint8 RGB), the prompt and the detections."""

    pixels: np.ndarray
    prompt: str
    detections: list[Detection]
    dropped: int = 0


def demo_auth(api_key: str | None) -> Callable[[str, str], bool] | None:
    """Gradio's ``auth`` for a key: any user name, the key as password (constant-time compare)."""
    if not api_key:
        return None
    key = api_key.encode()
    return lambda username, password: hmac.compare_digest((password or "").encode(), key)


def demo_options() -> dict:
    """The keyword arguments given to Gradio wherever the demo is served (``launch`` or
    ``mount_gradio_app``): Gradio's exception texts (temp paths, exception names) never reach the
    page, and no MCP server is started."""
    return {"show_error": False, "mcp_server": False}


#: The message for a file argument that is not an upload of the demo.
NOT_UPLOADED = "**Error:** this demo reads only files uploaded through it."


def _uploaded(path, upload_dir: str | None) -> bool:
    """False when ``upload_dir`` is given and ``path`` (a path from the page) is not a file in it
    (symbolic links and ``..`` resolved): the demo then reads nothing."""
    if upload_dir is None or not isinstance(path, (str, os.PathLike)):
        return True
    if inside(path, os.path.realpath(upload_dir)):
        return True
    logger.warning("the demo refused a file argument outside its upload area")
    return False


def _error(exc: BaseException) -> str:
    status, message = public_error(exc)
    if status >= 500:
        logger.error("demo request failed: %s: %s", type(exc).__name__, exc)
    else:
        logger.info("demo request refused: %s", message)
    return f"**Error:** {message}"


def _pixels(image, max_pixels: int | None) -> np.ndarray:
    """The page gives a file path (read as bytes: messages never show where it was stored); Python
    callers may pass a PIL image or an array."""
    from lang_sam.errors import ImageTooLargeError
    from lang_sam.validation import to_rgb_pil

    if isinstance(image, (str, os.PathLike)):
        return np.asarray(read_upload(Path(image).read_bytes(), max_pixels))
    pil = to_rgb_pil(image)
    if max_pixels is not None and pil.width * pil.height > max_pixels:
        raise ImageTooLargeError(f"image is {pil.width}x{pil.height} = {pil.width * pil.height} pixels; "
                                 f"this server accepts at most {max_pixels} (width x height, --max-pixels)",
                                 width=pil.width, height=pil.height, limit=max_pixels)
    return np.asarray(pil)


def render(state: DemoState) -> np.ndarray:
    """The overlay of :func:`lang_sam.utils.draw_image` for the current masks, with the clicks drawn
    (foreground green, background red). ``HxWx3`` uint8."""
    from PIL import Image, ImageDraw

    from lang_sam.labeling.formats import detection_labels, rle_to_mask
    from lang_sam.utils import draw_image

    H, W = state.pixels.shape[:2]
    cover = MaskCoverage(len(state.detections), (H, W))
    for d in state.detections:
        cover.add(rle_to_mask(d.mask)[None])
    boxes = np.array([d.box for d in state.detections], dtype=np.float32).reshape(-1, 4)
    labels = detection_labels([d.phrase for d in state.detections], [d.score for d in state.detections])
    overlay = draw_image(state.pixels, cover.result(), boxes, labels)
    if not any(d.points for d in state.detections):
        return overlay
    pil = Image.fromarray(overlay)
    draw = ImageDraw.Draw(pil)
    r = max(3, round(min(H, W) / 80))
    for d in state.detections:
        for x, y, label in d.points:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(0, 200, 0) if label else (230, 0, 0),
                         outline=(255, 255, 255), width=max(1, r // 3))
    return np.asarray(pil)


def table_rows(state: DemoState | None) -> list[list]:
    """The detections table (see :data:`HEADERS`)."""
    if state is None:
        return []
    return [[d.phrase, round(d.score, 3), *[round(v, 1) for v in d.box],
             sum(1 for p in d.points if p[2] == 1), sum(1 for p in d.points if p[2] == 0)]
            for d in state.detections]


def sam_choices(current: str | None = None) -> list[str]:
    """The SAM types the demo offers: every registered one, except a gated one (SAM 3: its
    weights need an access token, so the demo cannot fetch them) whose weights are not on disk
    (``LANG_SAM_WEIGHTS_DIR``, the caches) and that is not the one loaded (``current``)."""
    from lang_sam.hub import candidate_paths, is_present
    from lang_sam.models.registry import registered_specs

    return sorted(s.name for s in registered_specs("sam")
                  if not s.gated or s.name == current or any(is_present(s, p) for p in candidate_paths(s)))


def segment(service: ModelService, image, text_prompt, sam_type, gdino_type, box_threshold,
            text_threshold, progress=None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
            upload_dir: str | None = None):
    """Run a text prompt; returns ``(overlay, rows, message, state)``. Errors become a readable
    message (and ``state`` None). With ``upload_dir`` (the page's uploads), an image given as a
    path outside it is refused (:data:`NOT_UPLOADED`) before it is opened."""
    from lang_sam.errors import InvalidPromptError, LangSAMError
    from lang_sam.validation import check_prompt

    def report(fraction, text):
        if progress is not None:
            progress(fraction, desc=text)

    if image is None:
        return None, [], "**Error:** upload an image first.", None
    if not _uploaded(image, upload_dir):
        return None, [], NOT_UPLOADED, None
    if not isinstance(text_prompt, str):
        return None, [], "**Error:** the text prompt must be text.", None
    try:
        check_prompt(text_prompt)
    except InvalidPromptError as exc:
        return None, [], f"**Error:** {exc}", None
    if len(text_prompt) > MAX_PROMPT_CHARS:
        return None, [], (f"**Error:** the text prompt is {len(text_prompt)} characters; at most "
                          f"{MAX_PROMPT_CHARS}."), None
    try:
        pixels = _pixels(image, max_pixels)
        result = service.predict(pixels, text_prompt, box_threshold, text_threshold,
                                 sam_type=sam_type, gdino_type=gdino_type, progress=report, masks="rle")
    except (LangSAMError, ValueError, OSError) as exc:
        return None, [], _error(exc), None
    detections = [Detection(p, s, b, m, m) for p, s, b, m in
                  zip(result.phrases, result.logits.tolist(), result.boxes.tolist(), result.masks.rle)]
    state = DemoState(pixels, text_prompt, detections, result.dropped)
    message = f"{len(detections)} detection(s) for `{text_prompt}`."
    if result.dropped:
        message += (f" The {result.dropped} lowest-scoring were left out (at most "
                    f"{service.max_detections} per request).")
    if detections:
        message += " Click on the result to refine a mask."
    return render(state), table_rows(state), message, state


def _pick(state: DemoState, x: float, y: float) -> int | None:
    """The detection under ``(x, y)``: among those whose mask and box both hold the point, else
    whose mask holds it, else whose box holds it, the one with the smallest box."""
    from lang_sam.labeling.formats import rle_to_mask

    H, W = state.pixels.shape[:2]
    xi, yi = min(max(int(x), 0), W - 1), min(max(int(y), 0), H - 1)
    dets = state.detections
    in_mask = {i for i, d in enumerate(dets) if rle_to_mask(d.mask)[yi, xi]}
    in_box = {i for i, d in enumerate(dets) if d.box[0] <= x <= d.box[2] and d.box[1] <= y <= d.box[3]}
    under = (in_mask & in_box) or in_mask or in_box
    if not under:
        return None
    return min(sorted(under),
               key=lambda i: (dets[i].box[2] - dets[i].box[0]) * (dets[i].box[3] - dets[i].box[1]))


def click(service: ModelService, state: DemoState | None, x: float, y: float, background: bool = False):
    """Add a click at pixel ``(x, y)`` and refine the detection under it; returns
    ``(overlay, rows, message, state)`` (a new state; the given one is not changed)."""
    from lang_sam.errors import LangSAMError
    from lang_sam.labeling.formats import masks_to_rle

    if state is None or not state.detections:
        return (render(state) if state is not None else None), table_rows(state), \
            "**Error:** run a text prompt that finds something first; clicks refine its masks.", state
    i = _pick(state, x, y)
    if i is None:
        return render(state), table_rows(state), (f"No detection under the click at ({x:.0f}, {y:.0f}): "
                                            "click inside a mask or a box."), state
    d = state.detections[i]
    points = d.points + [(float(x), float(y), 0 if background else 1)]
    try:
        low_res = d.low_res
        if low_res is None:  # the text result's own logits, to refine from
            first = service.segment(state.pixels, boxes=d.box).low_res_logits
            assert first is not None  # LangSAM.segment always returns them
            low_res = first[0, 0].numpy()
        out = service.segment(
            state.pixels, boxes=d.box, points=[p[:2] for p in points],
            point_labels=[p[2] for p in points], mask_input=low_res,
        )
    except (LangSAMError, ValueError, OSError) as exc:
        return render(state), table_rows(state), _error(exc), state
    assert out.low_res_logits is not None  # LangSAM.segment always returns them
    new = replace(d, mask=masks_to_rle(out.masks.dense[:, 0])[0], points=points,
                  low_res=out.low_res_logits[0, 0].numpy(), sam_score=float(out.iou_scores[0, 0]))
    state = replace(state, detections=[new if j == i else o for j, o in enumerate(state.detections)])
    fg = sum(1 for p in points if p[2] == 1)
    name = f" (`{d.phrase}`)" if d.phrase else ""
    message = (f"Detection {i + 1}{name} refined with {fg} foreground and "
               f"{len(points) - fg} background click(s); SAM score {new.sam_score:.2f}.")
    return render(state), table_rows(state), message, state


def reset(state: DemoState | None):
    """Drop every click: the text result again. Returns ``(overlay, rows, message, state)``."""
    if state is None:
        return None, [], "Nothing to reset.", None
    state = replace(state, detections=[replace(d, mask=d.text_mask, points=[], low_res=None,
                                               sam_score=None) for d in state.detections])
    return render(state), table_rows(state), f"Clicks cleared: {len(state.detections)} detection(s) " \
                                       f"for `{state.prompt}`.", state


#: The columns of the video tab's track table.
TRACK_HEADERS = ["track", "phrase", "score", "first frame", "last frame", "frames"]
#: The name prefix of the video tab's temporary folders (in the system's temp directory).
TRACK_PREFIX = "lang-sam-track-"
#: The most video-tab folders the demo keeps at once (all sessions together).
MAX_TRACK_FOLDERS = 8


class TrackFolders:
    """The video tab's temporary folders (one per run, holding ``tracked.mp4`` until Gradio has
    copied it into its own cache to serve it): a session's folder is deleted when that session's
    next run starts (:meth:`new`) or the session ends (:meth:`end`, on the page's unload), and at
    most ``keep`` are kept in all: over that, the oldest are deleted first. Thread-safe."""

    def __init__(self, keep: int = MAX_TRACK_FOLDERS, prefix: str = TRACK_PREFIX):
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        import threading
        from collections import OrderedDict

        self.keep, self.prefix = keep, prefix
        self._lock = threading.Lock()
        self._folders: OrderedDict[str | None, Path] = OrderedDict()

    def new(self, session: str | None) -> Path:
        """A new empty folder for ``session``'s run; its previous one is deleted."""
        folder = Path(tempfile.mkdtemp(prefix=self.prefix))
        with self._lock:
            gone = [self._folders.pop(session)] if session in self._folders else []
            self._folders[session] = folder
            while len(self._folders) > self.keep:
                gone.append(self._folders.popitem(last=False)[1])
        for old in gone:
            shutil.rmtree(old, ignore_errors=True)
        return folder

    def end(self, session: str | None) -> None:
        """Delete ``session``'s folder (nothing when it has none)."""
        with self._lock:
            old = self._folders.pop(session, None)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def clear(self) -> None:
        """Delete every folder."""
        with self._lock:
            gone, self._folders = list(self._folders.values()), type(self._folders)()
        for old in gone:
            shutil.rmtree(old, ignore_errors=True)

    def __len__(self) -> int:
        return len(self._folders)


def track_clip(service: ModelService, video, text_prompt, box_threshold=BOX_THRESHOLD,
               text_threshold=TEXT_THRESHOLD, detect_every=DETECT_EVERY, progress=None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               max_frames: int | None = DEFAULT_MAX_FRAMES, upload_dir: str | None = None,
               out_dir: str | os.PathLike | None = None):
    """Track ``text_prompt`` through the clip at the path ``video`` (the page's upload) with
    :meth:`ModelService.track` (its frame and pixel limits) and draw the tracks; returns
    ``(overlay mp4 path or None, rows of TRACK_HEADERS, message)``. The overlay is written to
    ``out_dir/tracked.mp4`` (default: a new temporary folder, the caller's to delete; the demo
    gives the folders of :class:`TrackFolders`). With ``upload_dir``, a video outside it is refused
    (:data:`NOT_UPLOADED`) before it is opened. Errors become a readable message that names
    neither the upload's path nor an exception."""
    from lang_sam.errors import InvalidPromptError, LangSAMError
    from lang_sam.validation import check_prompt

    def report(fraction, text):
        if progress is not None:
            progress(fraction, desc=text)

    if not video:
        return None, [], "**Error:** upload a video first."
    if not _uploaded(video, upload_dir):
        return None, [], NOT_UPLOADED
    if not isinstance(text_prompt, str):
        return None, [], "**Error:** the text prompt must be text."
    try:
        check_prompt(text_prompt)
    except InvalidPromptError as exc:
        return None, [], f"**Error:** {exc}"
    if len(text_prompt) > MAX_PROMPT_CHARS:
        return None, [], (f"**Error:** the text prompt is {len(text_prompt)} characters; at most "
                          f"{MAX_PROMPT_CHARS}.")
    try:
        detect_every = int(detect_every)
    except (TypeError, ValueError, OverflowError):
        detect_every = 0
    if detect_every < 1:
        return None, [], "**Error:** detect every N frames must be a whole number >= 1."
    out = Path(out_dir if out_dir is not None else tempfile.mkdtemp(prefix=TRACK_PREFIX)) / "tracked.mp4"
    try:
        result = service.track(str(video), text_prompt, box_threshold, text_threshold,
                               detect_every=detect_every, max_frames=max_frames,
                               max_pixels=max_pixels, masks=False, overlay=out, progress=report)
    except (LangSAMError, ValueError, OSError) as exc:
        if out_dir is None:
            shutil.rmtree(out.parent, ignore_errors=True)
        else:
            out.unlink(missing_ok=True)
        return None, [], _error(exc).replace(str(video), "the uploaded video")
    rows = [[t["track_id"], t["phrase"], round(t["score"], 2), t["first_frame"], t["last_frame"], t["frames"]]
            for t in result.tracks]
    message = (f"{len(result.tracks)} track(s) for `{text_prompt}` over {len(result.frames)} frame(s) "
               f"({result.image_size[1]}x{result.image_size[0]}).")
    for warning in result.warnings:  # e.g. a clip cut short of the frames its header announces
        message += f" **Warning:** {warning}."
    return str(out), rows, message


def _video_tab(service: ModelService, max_pixels: int | None, max_frames: int | None,
               folders: TrackFolders) -> None:
    """The video tab's components and events, inside the demo's Blocks; each run writes its
    overlay in a folder of ``folders`` for its session."""
    import gradio as gr

    def run(video, text_prompt, box_threshold, text_threshold, detect_every, progress=gr.Progress(),
            request: gr.Request = None):
        session = getattr(request, "session_hash", None)
        return track_clip(service, video, text_prompt, box_threshold, text_threshold, detect_every,
                          progress, max_pixels=max_pixels, max_frames=max_frames,
                          upload_dir=gradio_upload_dir(), out_dir=folders.new(session))

    limit = f" (at most {max_frames:,} frames)" if max_frames else ""
    gr.Markdown("Track objects through a short clip: GroundingDINO finds them on key frames, the "
                "video segmenter (SAM 2.1) follows them in between, each with a stable id.")
    with gr.Row():
        with gr.Column():
            video = gr.Video(label=f"Video{limit}", elem_id="input-video", sources=["upload"])
            prompt = gr.Textbox(label="Text prompt", placeholder="car. person", elem_id="video-prompt")
            box_threshold = gr.Slider(0, 1, value=BOX_THRESHOLD, step=0.01, label="Box threshold",
                                      elem_id="video-box-threshold")
            text_threshold = gr.Slider(0, 1, value=TEXT_THRESHOLD, step=0.01, label="Text threshold",
                                       elem_id="video-text-threshold")
            detect_every = gr.Slider(1, 60, value=DETECT_EVERY, step=1, label="Detect every N frames",
                                     elem_id="detect-every")
            button = gr.Button("Track", variant="primary", elem_id="run-track")
        with gr.Column():
            output = gr.Video(label="Tracked overlay", elem_id="output-video", interactive=False)
            status = gr.Markdown(elem_id="track-status")
            table = gr.Dataframe(headers=TRACK_HEADERS, label="Tracks", elem_id="tracks", interactive=False)
    button.click(run, inputs=[video, prompt, box_threshold, text_threshold, detect_every],
                 outputs=[output, table, status])


def build_demo(service: ModelService, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               max_frames: int | None = DEFAULT_MAX_FRAMES):
    """The Gradio Blocks of the demo, bound to ``service``: an image tab and a video tab
    (:func:`track_clip`); images and frames over ``max_pixels`` (width x height) and videos over
    ``max_frames`` frames are refused with a message."""
    import gradio as gr

    folders = TrackFolders()
    images = _image_demo(service, max_pixels=max_pixels)
    with gr.Blocks(title="lang-sam video", analytics_enabled=False) as videos:
        _video_tab(service, max_pixels, max_frames, folders)
    demo = gr.TabbedInterface([images, videos], ["Image", "Video"], analytics_enabled=False)
    demo.title = "lang-sam"  # the page's title, as the image demo's alone

    def session_ended(request: gr.Request = None):
        folders.end(getattr(request, "session_hash", None))

    demo.unload(session_ended)
    demo.track_folders = folders  # for the tests and for whoever embeds the demo
    # Every event goes through the queue (its concurrency limit, its error events): Gradio's
    # direct .../run/<name> routes, which answered a handler's error with 500, are closed (404).
    demo.queue(api_open=False)
    return demo


def _image_demo(service: ModelService, *, max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """The image tab's Blocks (the text prompt, click refinement); images over ``max_pixels``
    (width x height) are refused with a message."""
    import gradio as gr

    from lang_sam.hub import GDINO_MODELS

    def run(image, text_prompt, sam_type, gdino_type, box_threshold, text_threshold,
            progress=gr.Progress()):
        return segment(service, image, text_prompt, sam_type, gdino_type, box_threshold,
                       text_threshold, progress, max_pixels=max_pixels, upload_dir=gradio_upload_dir())

    def on_click(state, mode, evt: gr.SelectData):
        index = getattr(evt, "index", None)
        if (not isinstance(index, (list, tuple)) or len(index) < 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                           for v in index[:2])):
            return (render(state) if isinstance(state, DemoState) else None), table_rows(state), \
                "**Error:** a click gives the pixel (x, y) it was on.", state
        x, y = index[:2]
        return click(service, state, x, y, background=mode == BACKGROUND)

    switch = service.allow_model_switch
    note = None if switch else "model switching is off (start with --allow-model-switch)"
    with gr.Blocks(title="lang-sam", analytics_enabled=False) as demo:
        gr.Markdown("# lang-sam\nSegment objects from a text prompt: GroundingDINO finds boxes, "
                    "Segment Anything turns each box into a mask. Separate classes with `.`. "
                    "Then click on the result to refine the mask under the click.")
        state = gr.State(None)
        with gr.Row():
            with gr.Column():
                sam_type = gr.Dropdown(sam_choices(service.sam_type), value=service.sam_type, label="SAM model",
                                       elem_id="sam-type", interactive=switch, info=note)
                gdino_type = gr.Dropdown(sorted(GDINO_MODELS), value=service.gdino_type,
                                         label="GroundingDINO model", elem_id="gdino-type",
                                         interactive=switch, info=note)
                box_threshold = gr.Slider(0, 1, value=BOX_THRESHOLD, step=0.01, label="Box threshold",
                                          elem_id="box-threshold")
                text_threshold = gr.Slider(0, 1, value=TEXT_THRESHOLD, step=0.01, label="Text threshold",
                                           elem_id="text-threshold")
                limit = f" (at most {max_pixels:,} pixels)" if max_pixels else ""
                image = gr.Image(type="filepath", image_mode=None, label=f"Image{limit}",
                                 elem_id="input-image")
                prompt = gr.Textbox(label="Text prompt", placeholder="car. wheel", elem_id="prompt")
                button = gr.Button("Segment", variant="primary", elem_id="run")
            with gr.Column():
                output = gr.Image(label="Segmented image: click to refine", elem_id="output-image",
                                  interactive=False, format="png")
                with gr.Row():
                    mode = gr.Radio([FOREGROUND, BACKGROUND], value=FOREGROUND,
                                    label="A click adds a point of the", elem_id="click-mode")
                    reset_button = gr.Button("Reset clicks", elem_id="reset")
                status = gr.Markdown(elem_id="status")
                table = gr.Dataframe(headers=HEADERS, label="Detections", elem_id="detections",
                                     interactive=False)
        examples = [[str(ASSETS / name), text] for name, text in EXAMPLES if (ASSETS / name).is_file()]
        if examples:
            gr.Examples(examples, inputs=[image, prompt])
        outputs = [output, table, status, state]
        button.click(run, inputs=[image, prompt, sam_type, gdino_type, box_threshold, text_threshold],
                     outputs=outputs)
        output.select(on_click, inputs=[state, mode], outputs=outputs)
        reset_button.click(reset, inputs=[state], outputs=outputs)
    return demo


def launch(
    service: ModelService,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_body_mb: float | None = DEFAULT_MAX_BODY_MB,
    api_key: str | None = None,
    max_frames: int | None = DEFAULT_MAX_FRAMES,
) -> None:
    """Serve the demo of ``service`` alone on ``host:port`` until stopped (``lang-sam app``):
    images over ``max_pixels`` (width x height) are refused, uploads over ``max_body_mb`` MiB too
    (None: no limit), and ``api_key`` (None: none) is the login password (:func:`demo_auth`)."""
    from starlette.middleware import Middleware


    demo = build_demo(service, max_pixels=max_pixels, max_frames=max_frames)
    max_bytes = body_limit_bytes(max_body_mb or None)  # 0: no limit
    guard = Middleware(UploadOnlyGuard, prefix="", max_body_bytes=max_bytes, blocks=demo)
    # Gradio adds its CORS and response-compression layers around these two; neither reads a
    # request body, so FramingHeaderGuard still answers before anything does.
    demo.queue().launch(server_name=host, server_port=port, share=False,
                        auth=demo_auth(api_key), max_file_size=max_bytes,
                        app_kwargs={"middleware": [Middleware(FramingHeaderGuard), guard]}, **demo_options())
