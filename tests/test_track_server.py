"""Video tracking in the server (``POST /track``, FastAPI's TestClient in process) and in the demo's
video tab (:func:`lang_sam.serving.app.track_clip`, and the tab in the Blocks), with the video test
engines (tests/track_helpers.py): answers equal ``predict_video`` called directly on the same file;
the limits (body size, frames, pixels) answer 413; bad requests 400 / 415 with messages that never
name the server's temporary file; the uploads are deleted."""

from __future__ import annotations

import glob
import os
import tempfile
import time

import numpy as np
import pytest

from lang_sam.labeling import video_formats as vf
from lang_sam.labeling.formats import rle_to_mask
from lang_sam.serving.service import ModelService, public_error
from lang_sam.video_io import iter_frames
from track_helpers import CLIPS, GDINO_TYPE, PROMPT, SAM_TYPE, VideoEngines, cut_clip, lying_mov, png_bytes, write_clip

av = pytest.importorskip("av")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    e = VideoEngines(tmp_path_factory.mktemp("engines"))
    yield e
    e.close()


@pytest.fixture(scope="module")
def service(engines):
    return ModelService(sam_type=SAM_TYPE, gdino_type=GDINO_TYPE, sam_ckpt=str(engines.sam_ckpt),
                        gdino_ckpt=str(engines.det_ckpt), device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "a.mp4", *CLIPS["a.mp4"])


def client(service, **limits):
    from fastapi.testclient import TestClient

    from lang_sam.serving.server import create_app

    return TestClient(create_app(service, mount_demo=False, **limits))


def post(c, clip, **fields):
    data = {"text_prompt": PROMPT, "detect_every": "3", **fields}
    with open(clip, "rb") as f:
        return c.post("/track", data=data, files={"video": ("clip.mp4", f, "video/mp4")})


def leftovers() -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), "lang-sam-track-*"))


def test_track_json_equals_predict_video(service, engines, clip):
    before = leftovers()
    r = post(client(service), clip)
    assert r.status_code == 200, r.text
    body = r.json()
    direct = list(engines.model().predict_video(iter_frames(clip), PROMPT, detect_every=3))
    assert (body["width"], body["height"], body["frame_count"]) == (128, 96, len(direct)) == (128, 96, 12)
    assert body["fps"] == pytest.approx(10) and body["sam_type"] == SAM_TYPE
    for got, want in zip(body["frames"], direct):
        assert got["frame_index"] == want.frame_index
        assert got["track_ids"] == want.track_ids.tolist() and got["phrases"] == want.phrases
        assert np.allclose(got["boxes"], want.boxes.numpy().reshape(-1, 4), atol=0.01)
        assert [rle_to_mask(m).tolist() for m in got["masks"]] == want.masks.numpy().tolist()
    assert [(t["track_id"], t["phrase"], t["first_frame"], t["last_frame"], t["frames"])
            for t in body["tracks"]] == [(1, "red", 0, 11, 12), (2, "blue", 6, 11, 6)]
    assert leftovers() == before  # the upload's temporary file is gone


def test_track_mot_text_and_no_masks(service, engines, clip):
    c = client(service)
    r = post(c, clip, format="mot")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    direct = list(engines.model().predict_video(iter_frames(clip), PROMPT, detect_every=3))
    assert r.text.splitlines() == [line for f in direct for line in vf.mot_lines(f)]
    assert (r.headers["x-frames"], r.headers["x-tracks"]) == ("12", "2")
    r = post(c, clip, masks="false")
    assert r.status_code == 200 and all("masks" not in f for f in r.json()["frames"])


@pytest.mark.parametrize("limits, needle", [
    ({"max_frames": 5}, "at most 5 frames (--max-frames)"),
    ({"max_pixels": 128 * 96 - 1}, "(per frame, width x height, --max-pixels)"),
    ({"max_body_mb": 1e-4}, "--max-body-mb"),
])
def test_limits_answer_413(service, clip, limits, needle):
    before = leftovers()
    r = post(client(service, **limits), clip)
    assert r.status_code == 413 and needle in r.json()["error"]
    assert leftovers() == before


def test_a_header_that_understates_the_frames_is_caught_while_decoding(service, clip, monkeypatch):
    from lang_sam import video_io

    real = video_io.open_video

    def no_count(video, **kwargs):
        source = real(video, **kwargs)
        source.frame_count = None  # as a container without a frame count in its header
        return source

    monkeypatch.setattr(video_io, "open_video", no_count)
    r = post(client(service, max_frames=5), clip)
    assert r.status_code == 413 and "more than 5 frames" in r.json()["error"]


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    """A 20-frame mp4 (index first) cut where frame 9 begins: its header still says 20."""
    d = tmp_path_factory.mktemp("cut")
    return cut_clip(write_clip(d / "whole.mp4", CLIPS["a.mp4"][0], 20), d / "cut.mp4", 9)


CUT_WARNING = "the video ended after 9 frame(s) while its header announces 20: 11 are missing (the file may be cut short)"


def test_a_cut_video_is_answered_with_a_warning(service, clip, cut):
    c = client(service)
    r = post(c, cut)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["frame_count"], body["frame_count_declared"], body["warnings"]) == (9, 20, [CUT_WARNING])
    r = post(c, cut, format="mot")
    assert r.status_code == 200
    assert (r.headers["x-frames"], r.headers["x-frame-count-declared"], r.headers["x-warnings"]) == (
        "9", "20", CUT_WARNING)
    whole = post(c, clip)  # a whole file: no warning
    assert (whole.json()["frame_count_declared"], whole.json()["warnings"]) == (12, [])
    assert "x-warnings" not in post(c, clip, format="mot").headers


def test_demo_track_clip_says_a_video_was_cut(service, cut):
    from lang_sam.serving.app import track_clip

    path, rows, message = track_clip(service, str(cut), PROMPT, 0.3, 0.25, 3)
    assert path is not None and "9 frame(s)" in message
    assert message.endswith(f"**Warning:** {CUT_WARNING}.")


@pytest.fixture(scope="module")
def lying(tmp_path_factory):
    """A 750 KB .mov whose header says 64x64 and whose one frame is a 16000x16000 PNG (768 MB
    decoded)."""
    return lying_mov(tmp_path_factory.mktemp("lying") / "big.mov")


@pytest.mark.parametrize("frames, header, status, needle", [
    # the header lies: the frame is refused by the decoder's own limit, never allocated
    ([(16000, 16000)], (64, 64), 413, "16000x16000 = 256,000,000 pixels per frame"),
    # no size in the header: learnt from frame 0 within the limit, or refused
    ([(16000, 16000)], (0, 0), 413, "16000x16000"),
    ([b"not a png"], (0, 0), 400, "frame size"),
    # frame 0 as announced, frame 1 over the limit: 413 (it was a 400 after decoding 768 MB)
    ([(64, 64), (16000, 16000)], (64, 64), 413, "16000x16000"),
])
def test_frames_over_the_pixel_limit_are_refused_before_they_are_decoded(service, tmp_path, frames, header,
                                                                         status, needle):
    before = leftovers()
    video = lying_mov(tmp_path / "v.mov", frames, header)
    with open(video, "rb") as f:
        r = client(service).post("/track", data={"text_prompt": PROMPT},
                                 files={"video": ("v.mov", f, "video/quicktime")})
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]
    if status == 413:
        assert "--max-pixels" in r.json()["error"]
    assert leftovers() == before


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the server's RSS from /proc")
def test_six_lying_uploads_at_once_keep_the_server_memory_bounded(lying, sam_ckpt, gdino_ckpt, tmp_path):
    """Six uploads of the 16000x16000-in-a-64x64-header .mov at once: every answer is 413 and the
    server's RSS, sampled while they are handled, grows by less than 300 MB (one decoded frame
    is 768 MB; before the fix FFmpeg's probing decoded each, outside the service lock, and six
    took the server up by several GB)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from test_server import start, stop

    proc, url = start("server", sam_ckpt, gdino_ckpt, "--no-demo")
    try:
        small = lying_mov(tmp_path / "small.mov", [(64, 64)])  # warms the video path (400: SAM v1 cannot track)
        r = httpx.post(url + "/track", data={"text_prompt": "red"},
                       files={"video": ("s.mov", small.read_bytes(), "video/quicktime")}, timeout=60)
        assert r.status_code == 400, r.text
        baseline, peak, done = _rss(proc.pid), [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], _rss(proc.pid))
                time.sleep(0.005)

        body = lying.read_bytes()

        def send(_):
            return httpx.post(url + "/track", data={"text_prompt": "red"},
                              files={"video": ("big.mov", body, "video/quicktime")}, timeout=120)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(send, range(6)))
        finally:
            done.set()
            sampler.join()
        assert [a.status_code for a in answers] == [413] * 6, [a.text for a in answers]
        assert all("16000x16000" in a.json()["error"] for a in answers)
        grew = (peak[0] - baseline) / 2**20
        assert grew < 300, f"the server's RSS grew by {grew:.0f} MB (baseline {baseline / 2**20:.0f} MB)"
    finally:
        stop(proc)


@pytest.mark.parametrize("files, data, status, needle", [
    (None, {"text_prompt": "red"}, 400, "missing 'video'"),
    ("clip", {}, 400, "missing 'text_prompt'"),
    ("clip", {"text_prompt": " . "}, 400, "text_prompt"),
    ("clip", {"text_prompt": "red", "detect_every": "0"}, 400, "detect_every"),
    ("clip", {"text_prompt": "red", "box_threshold": "1.5"}, 400, "box_threshold"),
    ("clip", {"text_prompt": "red", "format": "xml"}, 400, "format must be 'json' or 'mot'"),
    ("clip", {"text_prompt": "red", "sam_type": "vit_h"}, 403, "switching is off"),
    ("garbage", {"text_prompt": "red"}, 400, "expected a video file FFmpeg can decode"),
    ("empty", {"text_prompt": "red"}, 400, "the 'video' file is empty"),
])
def test_bad_requests(service, clip, files, data, status, needle):
    before = leftovers()
    payload = {"clip": clip.read_bytes(), "garbage": b"not a video", "empty": b""}.get(files)
    r = client(service).post("/track", data=data,
                             files={"video": ("v.mp4", payload, "video/mp4")} if files else {"x": ("x", b"1")})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert needle in error
    assert tempfile.gettempdir() not in error and "lang-sam-track-" not in error
    assert leftovers() == before


def test_not_multipart_is_415(service):
    r = client(service).post("/track", json={"text_prompt": "red"})
    assert r.status_code == 415


def test_a_segmenter_that_cannot_track_is_400(clip, sam_ckpt, gdino_ckpt, tiny_specs):
    s = ModelService(sam_type=tiny_specs[0].name, gdino_type=tiny_specs[1].name, sam_ckpt=str(sam_ckpt),
                     gdino_ckpt=str(gdino_ckpt), device="cpu")
    r = post(client(s), clip, text_prompt="red")
    assert r.status_code == 400 and "cannot follow objects through a video" in r.json()["error"]


def test_video_too_large_is_413():
    from lang_sam.errors import VideoTooLargeError

    exc = VideoTooLargeError("too long", source="x", limit=3, what="frames")
    assert isinstance(exc, ValueError) and public_error(exc) == (413, "too long")


# --------------------------------------------------------------------------------------------
# The demo's video tab
# --------------------------------------------------------------------------------------------

def test_demo_track_clip_writes_the_overlay(service, clip):
    from lang_sam.serving.app import TRACK_HEADERS, track_clip

    steps = []
    path, rows, message = track_clip(service, str(clip), PROMPT, 0.3, 0.25, 3,
                                     lambda f, desc: steps.append((f, desc)))
    assert message.startswith("2 track(s)") and "12 frame(s)" in message
    assert len(TRACK_HEADERS) == len(rows[0]) and [r[:2] for r in rows] == [[1, "red"], [2, "blue"]]
    with av.open(path) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    assert len(frames) == 12 and frames[0].shape == (96, 128, 3)
    assert steps[-1] == (1.0, "frame 12/12")


@pytest.mark.parametrize("video, prompt, limits, needle", [
    (None, "red", {}, "upload a video first"),
    ("clip", "", {}, "prompt"),
    ("clip", "red", {"max_frames": 4}, "at most 4 frames"),
    ("garbage", "red", {}, "FFmpeg can decode"),
])
def test_demo_track_clip_messages(service, clip, tmp_path, video, prompt, limits, needle):
    from lang_sam.serving.app import track_clip

    garbage = tmp_path / "upload.mp4"
    garbage.write_bytes(b"not a video")
    path = {"clip": str(clip), "garbage": str(garbage)}.get(video)
    out, rows, message = track_clip(service, path, prompt, **limits)
    assert out is None and rows == [] and message.startswith("**Error:**") and needle in message
    assert str(tmp_path) not in message and "Error:" in message and "Traceback" not in message


def test_demo_has_a_video_tab(service):
    pytest.importorskip("gradio")
    from lang_sam.serving.app import build_demo

    demo = build_demo(service, max_frames=42)
    ids = {c.get("props", {}).get("elem_id") for c in demo.config["components"]}
    assert {"input-video", "video-prompt", "run-track", "output-video", "tracks"} <= ids
    assert {"input-image", "prompt", "run"} <= ids  # the image tab is still there
    labels = [c.get("props", {}).get("label") for c in demo.config["components"]]
    assert "Video (at most 42 frames)" in labels


@pytest.mark.slow
def test_video_tab_in_headless_chromium(clip, tmp_path):
    """The demo's page in Chromium: open the Video tab, upload a clip, type a prompt, press Track:
    the tracked overlay plays and the table lists the tracks; a clip over --max-frames is refused
    with a message."""
    import shutil
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("needs Debian's chromium (CI installs it)")
    pytest.importorskip("gradio")
    from playwright.sync_api import sync_playwright

    long_clip = write_clip(tmp_path / "long.mp4", *CLIPS["a.mp4"][:1], 30)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "engines").mkdir()
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("track_tiny.py")), "app",
                             str(tmp_path / "engines"), "--port", str(port), "--max-frames", "20"],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "LANG_SAM_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(url, wait_until="load", timeout=120000)
            page.get_by_role("tab", name="Video").click()
            page.wait_for_selector("#run-track", timeout=60000)

            def status_has(text):
                page.wait_for_function(
                    f"document.querySelector('#track-status').innerText.includes({text!r})", timeout=120000)

            page.set_input_files("#input-video input[type=file]", str(clip))
            page.fill("#video-prompt textarea", PROMPT)
            page.click("#run-track")
            status_has("2 track(s)")
            assert "12 frame(s)" in page.inner_text("#track-status")
            page.wait_for_selector("#output-video video", timeout=60000)
            assert page.get_attribute("#output-video video", "src")
            rows = page.inner_text("#tracks")
            assert "red" in rows and "blue" in rows
            page.goto(url, wait_until="load", timeout=120000)  # a fresh page: the upload area again
            page.get_by_role("tab", name="Video").click()
            page.set_input_files("#input-video input[type=file]", str(long_clip))
            page.fill("#video-prompt textarea", PROMPT)
            page.click("#run-track")
            status_has("at most 20 frames")
            assert str(tmp_path) not in page.inner_text("#track-status")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
