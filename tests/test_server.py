"""The HTTP server in a subprocess with the tiny models: happy paths checked against direct
LangSAM calls, every bad request (typed JSON errors that never name a server path), the limits
(body, pixels, detections), model switching, the API key, and bounded concurrency."""

from __future__ import annotations

import io
import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

HERE = Path(__file__).parent
KEY = "test-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, sam_ckpt, gdino_ckpt, *extra, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``tests/serve_tiny.py kind`` on a free port and wait for it; its output goes to the
    file ``proc.log_path``."""
    port = free_port()
    cmd = [sys.executable, str(HERE / "serve_tiny.py"), kind, "--sam-ckpt", str(sam_ckpt),
           "--gdino-ckpt", str(gdino_ckpt), "--port", str(port), *extra]
    env = {**os.environ, "LANG_SAM_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONWARNINGS": "ignore", **(env or {})}
    log = tempfile.NamedTemporaryFile("w+", prefix=f"lang-sam-{kind}-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log_path = Path(log.name)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited early:\n{proc.log_path.read_text()}")
        try:
            if httpx.get(url + ("/health" if kind == "server" else "/"), timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{kind} did not come up:\n{proc.log_path.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    proc.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory, gdino_ckpt):
    """LANG_SAM_WEIGHTS_DIR of the servers: tiny_sam_other (valid, other weights) and
    tiny_sam_broken (a GroundingDINO file under a SAM name); tiny_sam_missing has no file."""
    from lang_sam.testing import tiny_sam_spec, write_sam_checkpoint

    d = tmp_path_factory.mktemp("weights")
    write_sam_checkpoint(d / "tiny_sam_other.pth", tiny_sam_spec("tiny_sam_other"), seed=5)
    (d / "tiny_sam_broken.pth").write_bytes(Path(gdino_ckpt).read_bytes())
    return d


@pytest.fixture(scope="module")
def server_proc(sam_ckpt, gdino_ckpt, weights_dir):
    """Defaults but small limits; bound to every interface without an API key (a warning)."""
    proc, url = start("server", sam_ckpt, gdino_ckpt, "--max-pixels", "250000", "--cache-size", "4",
                      "--no-demo", "--max-body-mb", "1", "--host", "0.0.0.0",
                      env={"LANG_SAM_WEIGHTS_DIR": str(weights_dir), "LANG_SAM_API_KEY": ""})
    yield proc, url
    stop(proc)


@pytest.fixture(scope="module")
def server(server_proc):
    return server_proc[1]


@pytest.fixture(scope="module")
def guarded_proc(sam_ckpt, gdino_ckpt, weights_dir):
    """An API key from the environment, model switching on, at most 20 detections per request."""
    proc, url = start("server", sam_ckpt, gdino_ckpt, "--no-demo", "--allow-model-switch",
                      "--max-detections", "20",
                      env={"LANG_SAM_WEIGHTS_DIR": str(weights_dir), "LANG_SAM_API_KEY": KEY})
    yield proc, url
    stop(proc)


def png(arr: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **save)
    return buf.getvalue()


def post(url, image: bytes | None, prompt, *, path="/predict", headers=None, **fields):
    files = {"image": ("x.png", image, "image/png")} if image is not None else None
    data = {k: str(v) for k, v in fields.items()}
    if prompt is not None:
        data["text_prompt"] = prompt
    return httpx.post(url + path, files=files, data=data, headers=headers, timeout=180)


def decode(rles) -> torch.Tensor:
    from lang_sam.labeling.formats import rle_to_mask

    return torch.from_numpy(np.stack([rle_to_mask(m) for m in rles])) if rles else None


def check_against(payload, expected) -> None:
    assert payload["phrases"] == expected.phrases
    assert np.allclose(payload["boxes"], expected.boxes.numpy(), atol=1e-4) or (
        len(payload["boxes"]) == 0 == len(expected.boxes))
    assert np.allclose(payload["logits"], expected.logits.numpy(), atol=1e-6)
    if payload["masks"]:
        assert torch.equal(decode(payload["masks"]), expected.masks)
    else:
        assert len(expected.masks) == 0


def server_paths(*extra) -> list[str]:
    """Strings that must never appear in an error body: where the server's files are."""
    import site

    paths = [tempfile.gettempdir(), os.path.expanduser("~"), "site-packages", str(HERE.parent),
             *site.getsitepackages(), *map(str, extra)]
    return [p for p in paths if p and p != "/"]


def assert_error(r, status: int, match: str, *paths) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    assert match in body["error"], body["error"]
    for p in server_paths(*paths):
        assert p not in body["error"], f"{p!r} is revealed in {body['error']!r}"
    return body["error"]


@pytest.mark.slow
def test_health(server):
    body = httpx.get(server + "/health").json()
    assert body["status"] == "ok" and body["sam_type"] == "tiny_sam" and body["loaded"] is True
    assert body["max_detections"] == 100 and body["model_switch"] is False


@pytest.mark.slow
def test_predict_json(server, model):
    arr = make_image(120, 160, seed=21)
    r = post(server, png(arr), "a cat. a remote control", box_threshold=0.3, text_threshold=0.25)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"width", "height", "boxes", "phrases", "logits", "masks", "dropped"}
    assert (body["width"], body["height"]) == (160, 120)
    assert len(body["boxes"]) > 0 and body["dropped"] == 0
    assert len(body["boxes"]) == len(body["phrases"]) == len(body["logits"]) == len(body["masks"])
    assert all(m["size"] == [120, 160] for m in body["masks"])
    check_against(body, model.predict(arr, "a cat. a remote control", 0.3, 0.25))


@pytest.mark.slow
def test_predict_png_equals_draw_image(server, model):
    from lang_sam.labeling.formats import detection_labels
    from lang_sam.utils import draw_image

    arr = make_image(90, 110, seed=3)
    r = post(server, png(arr), "cat", format="png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (110, 90) and out.mode == "RGB"
    e = model.predict(arr, "cat")
    assert int(r.headers["X-Detections"]) == len(e.phrases) > 1
    expected = draw_image(arr, e.masks, e.boxes, detection_labels(e.phrases, e.logits))
    assert np.array_equal(np.asarray(out), expected)


@pytest.mark.slow
def test_exif_orientation_is_honoured(server, model):
    """The library turns an image by its EXIF orientation; the server reads uploads the same way."""
    from lang_sam.validation import open_image

    arr = make_image(80, 120, seed=4)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = png(arr, exif=exif)
    r = post(server, data, "cat")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (80, 120)
    check_against(body, model.predict(open_image(data), "cat"))


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width x height`` (what a decompression bomb looks like up to the
    first pixel), with one tiny IDAT: tiny bytes, huge image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


TOO_LONG = " ".join(f"thing{i}" for i in range(150))  # one phrase over 256 tokens


@pytest.mark.slow
@pytest.mark.parametrize("case,status,match", [
    ("missing image", 400, "missing 'image'"),
    ("empty image", 400, "empty"),
    ("not an image", 400, "not a readable image"),
    ("too large", 413, "at most 250000"),
    ("decompression bomb", 413, "30000x30000"),
    ("box threshold", 400, "box_threshold"),
    ("text threshold", 400, "text_threshold"),
    ("empty prompt", 400, "text_prompt is empty"),
    ("missing prompt", 400, "'text_prompt'"),
    ("over-long prompt", 400, "tokens"),
    ("too many characters", 400, "characters"),
    ("unknown sam type", 400, "unknown sam_type 'vit_q'"),
    ("other sam type", 403, "switching is off"),
    ("bad format", 400, "format"),
    ("not multipart", 415, "multipart"),
    ("multipart without boundary", 400, "boundary"),
    ("unknown path", 404, "Not Found"),
    ("wrong method", 405, "Method Not Allowed"),
    ("segment: no prompt", 400, "give 'boxes'"),
    ("segment: boxes not JSON", 400, "'boxes' is not valid JSON"),
    ("segment: boxes not an array", 400, "'boxes' must be a JSON array"),
    ("segment: box of 3 numbers", 400, "boxes must be shaped"),
    ("segment: box with text", 400, "boxes must be numbers"),
    ("segment: box x1 < x0", 400, "x0 <= x1"),
    ("segment: point outside", 400, "points must lie in the image"),
    ("segment: labels not one per point", 400, "one per point"),
    ("segment: label 2", 400, "1 (foreground) or 0 (background)"),
    ("segment: labels without points", 400, "without points"),
    ("segment: multimask", 400, "'multimask' must be true or false"),
    ("segment: too many prompts", 400, "at most 100"),
    ("segment: other sam type", 403, "switching is off"),
])
def test_bad_requests(server, weights_dir, sam_ckpt, case, status, match):
    small = png(make_image(40, 50))
    seg = {"path": "/segment"}
    if case == "missing image":  # multipart, but without the 'image' field
        r = httpx.post(server + "/predict", files={"picture": ("x.png", small, "image/png")},
                       data={"text_prompt": "cat"})
    elif case == "empty image":
        r = post(server, b"", "cat")
    elif case == "not an image":
        r = post(server, b"hello, not an image", "cat")
    elif case == "too large":
        r = post(server, png(np.zeros((600, 500, 3), np.uint8)), "cat")
    elif case == "decompression bomb":  # Pillow's own guard answered 500 (DecompressionBombError)
        r = post(server, bomb_png(30000, 30000), "cat")
    elif case == "box threshold":
        r = post(server, small, "cat", box_threshold=1.5)
    elif case == "text threshold":
        r = post(server, small, "cat", text_threshold="abc")
    elif case == "empty prompt":
        r = post(server, small, " . ")
    elif case == "missing prompt":
        r = post(server, small, None)
    elif case == "over-long prompt":
        r = post(server, small, TOO_LONG)
    elif case == "too many characters":
        r = post(server, small, "cat " * 600)
    elif case == "unknown sam type":
        r = post(server, small, "cat", sam_type="vit_q")
    elif case == "other sam type":
        r = post(server, small, "cat", sam_type="tiny_sam_other")
    elif case == "bad format":
        r = post(server, small, "cat", format="gif")
    elif case == "not multipart":
        r = httpx.post(server + "/predict", json={"text_prompt": "cat"})
    elif case == "multipart without boundary":
        r = httpx.post(server + "/predict", content=b"--x\r\n\r\n",
                       headers={"content-type": "multipart/form-data"})
    elif case == "unknown path":
        r = httpx.get(server + "/nothing/here")
    elif case == "wrong method":
        r = httpx.get(server + "/predict")
    elif case == "segment: no prompt":
        r = post(server, small, None, **seg)
    elif case == "segment: boxes not JSON":
        r = post(server, small, None, boxes="[[1, 2, 3, 4]", **seg)
    elif case == "segment: boxes not an array":
        r = post(server, small, None, boxes='{"x": 1}', **seg)
    elif case == "segment: box of 3 numbers":
        r = post(server, small, None, boxes="[[1, 2, 3]]", **seg)
    elif case == "segment: box with text":
        r = post(server, small, None, boxes='[[1, 2, "a", 4]]', **seg)
    elif case == "segment: box x1 < x0":
        r = post(server, small, None, boxes="[[30, 2, 10, 4]]", **seg)
    elif case == "segment: point outside":
        r = post(server, small, None, points="[[10, 10], [51, 10]]", **seg)
    elif case == "segment: labels not one per point":
        r = post(server, small, None, points="[[10, 10], [20, 10]]", point_labels="[1]", **seg)
    elif case == "segment: label 2":
        r = post(server, small, None, points="[[10, 10]]", point_labels="[2]", **seg)
    elif case == "segment: labels without points":
        r = post(server, small, None, boxes="[[1, 2, 30, 20]]", point_labels="[1]", **seg)
    elif case == "segment: multimask":
        r = post(server, small, None, boxes="[[1, 2, 30, 20]]", multimask="maybe", **seg)
    elif case == "segment: too many prompts":
        r = post(server, small, None, boxes=json.dumps([[1, 2, 30, 20]] * 101), **seg)
    else:
        r = post(server, small, None, boxes="[[1, 2, 30, 20]]", sam_type="tiny_sam_other", **seg)
    assert_error(r, status, match, weights_dir, Path(sam_ckpt).parent)
    assert httpx.get(server + "/health").status_code == 200, "a bad request must not take the server down"


HUGE_INT = "1" + "0" * 400  # fits no float64: numpy raised OverflowError (a 500)
LONG_INT = "1" + "0" * 5000  # over Python's 4300-digit limit: json.loads raised ValueError (a 500)
SMALL_PNG = png(make_image(40, 50))


@pytest.mark.slow
@pytest.mark.parametrize("case,path,fields,status,match", [
    # numbers that are finite in float64 but not in float32 (SAM's dtype), or not finite at all
    ("box coordinate 1e39", "/segment", {"boxes": "[[0, 0, 1e39, 10]]"}, 400, "finite float32"),
    ("box coordinate 1e38", "/segment", {"boxes": "[[0, 0, 1e38, 10]]"}, 400, "within the image"),
    ("box NaN", "/segment", {"boxes": "[[0, 0, NaN, 10]]"}, 400, "finite"),
    ("box Infinity", "/segment", {"boxes": "[[0, 0, Infinity, 10]]"}, 400, "finite"),
    ("box 1e400", "/segment", {"boxes": "[[0, 0, 1e400, 10]]"}, 400, "finite"),
    ("box integer over float64", "/segment", {"boxes": f"[[0, 0, {HUGE_INT}, 10]]"}, 400, "boxes must be numbers"),
    ("box integer of 5001 digits", "/segment", {"boxes": f"[[0, 0, {LONG_INT}, 10]]"}, 400, "too long"),
    ("point -Infinity", "/segment", {"points": "[[-Infinity, 3]]"}, 400, "finite"),
    ("point label 1e39", "/segment", {"points": "[[3, 3]]", "point_labels": "[1e39]"}, 400, "finite float32"),
    ("threshold nan", "/predict", {"text_prompt": "cat", "box_threshold": "nan"}, 400, "box_threshold"),
    ("threshold inf", "/predict", {"text_prompt": "cat", "text_threshold": "inf"}, 400, "text_threshold"),
    ("threshold 1e999", "/predict", {"text_prompt": "cat", "box_threshold": "1e999"}, 400, "box_threshold"),
    # nesting bounded before parsing (json.loads raised RecursionError: a 500)
    ("boxes nested 100000 deep", "/segment", {"boxes": "[" * 100_000}, 400, "at most 64"),
    ("points nested 100000 deep", "/segment", {"points": "[" * 50_000 + "]" * 50_000}, 400, "at most 64"),
    # a file where a text field belongs
    ("text_prompt as a file", "/predict", {"text_prompt": b"cat"}, 400, "'text_prompt' must be a text field"),
    ("sam_type as a file", "/predict", {"text_prompt": "cat", "sam_type": b"tiny_sam"}, 400, "'sam_type' must be a text field"),
    ("format as a file", "/predict", {"text_prompt": "cat", "format": b"png"}, 400, "'format' must be a text field"),
    ("boxes as a file", "/segment", {"boxes": b"[[1, 2, 3, 4]]"}, 400, "'boxes' must be a text field"),
    ("multimask as a file", "/segment", {"boxes": "[[1, 2, 3, 4]]", "multimask": b"1"}, 400, "'multimask' must be a text field"),
    # an unreadable image: Pillow's message carried a heap address (<_io.BytesIO object at 0x...>)
    ("not an image (no address)", "/predict", {"text_prompt": "cat", "image": b"GIF89a garbage"}, 400, "not a readable image"),
    # issue 25: images so thin that a resize to the model's input made a side 0 px (a 500); the tiny
    # SAM's long side is 256 px, so it takes at most 512:1
    *[(f"{w}x{h} PNG to {path}", path, {**fields, "image": png(np.zeros((h, w, 3), np.uint8))}, 400,
       f"image {w}x{h} is too thin for SAM 'tiny_sam'")
      for w, h in ((2000, 1), (5000, 2), (100000, 1), (1, 2000))
      for path, fields in (("/predict", {"text_prompt": "cat"}), ("/segment", {"boxes": "[[0, 0, 1, 1]]"}))],
])
def test_no_client_input_is_a_5xx(server, case, path, fields, status, match):
    """Issue 18: whatever a client sends is a 4xx with a JSON ``{"error"}`` body that names no
    address, server path or exception class."""
    files = {"image": ("x.png", SMALL_PNG, "image/png")}
    data = {}
    for name, value in fields.items():
        if isinstance(value, bytes):
            files[name] = (name + ".txt", value, "application/octet-stream")
        else:
            data[name] = value
    r = httpx.post(server + path, files=files, data=data, timeout=180)
    message = assert_error(r, status, match)
    assert not re.search(r"0x[0-9a-fA-F]{4,}|object at", message), message
    assert not re.search(r"\b[A-Z][A-Za-z]*(Error|Exception)\b", message), message
    assert httpx.get(server + "/health").status_code == 200


def test_unexpected_errors_name_no_class_or_detail(sam_ckpt, gdino_ckpt, tiny_specs):
    """The generic 500 said ``internal error: <ExceptionClass>``; now it names nothing, and the
    details go to the server log. (In-process: a service whose predict fails unexpectedly.)"""
    from fastapi.testclient import TestClient

    from lang_sam.serving.server import create_app
    from lang_sam.serving.service import ModelService

    class Failing(ModelService):
        def predict(self, *args, **kwargs):
            raise KeyError(f"/srv/secret/path {object()!r}")

    service = Failing(sam_type=tiny_specs[0].name, gdino_type=tiny_specs[1].name,
                      sam_ckpt=str(sam_ckpt), gdino_ckpt=str(gdino_ckpt), device="cpu")
    client = TestClient(create_app(service, mount_demo=False), raise_server_exceptions=False)
    r = client.post("/predict", files={"image": ("x.png", SMALL_PNG, "image/png")},
                    data={"text_prompt": "cat"})
    assert r.status_code == 500
    assert r.json() == {"error": "internal error (the details are in the server log)"}


def raw_request(url: str, head: bytes, chunks=(), pause: float = 0.05) -> tuple[int, dict]:
    """Send ``head`` then each of ``chunks`` over a plain socket, stopping early once the server
    answers; returns the answer's status and JSON body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(head)
        for data in chunks:
            if select.select([s], [], [], pause)[0]:
                break  # answered (and it reads no further)
            s.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
                dict(line.split(b": ", 1) for line in answer.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
                     if b": " in line).get(b"content-length", b"0")):
            part = s.recv(65536)
            if not part:
                break
            answer += part
    head_part, body = answer.split(b"\r\n\r\n", 1)
    return int(head_part.split()[1]), json.loads(body)


@pytest.mark.slow
def test_body_over_the_limit_by_content_length(server):
    """Content-Length over --max-body-mb (1 MiB here): 413 at once, before any of the body is sent."""
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 209715200\r\n\r\n")  # 200 MB announced, none sent
    t0 = time.time()
    status, body = raw_request(server, head)
    assert status == 413 and "1 MiB" in body["error"] and time.time() - t0 < 30


@pytest.mark.slow
def test_chunked_body_over_the_limit(server):
    """No Content-Length (chunked): the body is counted as it arrives and stopped past the limit."""
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
    block = os.urandom(64 * 1024)
    chunks = [b"%x\r\n%s\r\n" % (len(part), part)] + [b"%x\r\n%s\r\n" % (len(block), block)] * 48
    status, body = raw_request(server, head, chunks)  # up to 3 MiB offered
    assert status == 413 and "over this server's limit" in body["error"]
    assert httpx.get(server + "/health").status_code == 200


@pytest.mark.slow
def test_warns_when_exposed_without_a_key(server_proc):
    proc, _ = server_proc
    assert "without an API key" in proc.log_path.read_text()


@pytest.mark.slow
def test_segment_equals_langsam_segment(server, model):
    arr = make_image(100, 140, seed=8)
    boxes = [[10, 12, 90, 80], [40, 30, 130, 95]]
    points = [[50, 40], [70, 60]]
    r = post(server, png(arr), None, path="/segment", boxes=json.dumps(boxes),
             points=json.dumps(points), point_labels="[1, 0]", multimask="true")
    assert r.status_code == 200, r.text
    body = r.json()
    expected = model.segment(arr, boxes=boxes, points=points, point_labels=[1, 0], multimask_output=True)
    assert (body["width"], body["height"], body["multimask"]) == (140, 100, True)
    assert len(body["masks"]) == 2 and all(len(m) == 3 for m in body["masks"])
    got = torch.stack([decode(per_prompt) for per_prompt in body["masks"]])
    assert torch.equal(got, expected.masks)
    assert np.allclose(body["iou_scores"], expected.iou_scores.numpy(), atol=1e-6)
    # points alone, one mask each
    r = post(server, png(arr), None, path="/segment", points="[[20, 30], [60, 50]]")
    assert r.status_code == 200, r.text
    expected = model.segment(arr, points=[[20, 30], [60, 50]])
    assert torch.equal(decode(r.json()["masks"][0])[None], expected.masks)


@pytest.mark.slow
def test_api_key(guarded_proc):
    _, url = guarded_proc
    small = png(make_image(40, 50))
    assert httpx.get(url + "/health").status_code == 200  # open: for load balancers
    for headers in (None, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY[:-1]},
                    {"Authorization": KEY}):
        r = post(url, small, "cat", headers=headers)
        assert_error(r, 401, "API key")
        assert r.headers["www-authenticate"] == "Bearer"
    assert_error(httpx.get(url + "/docs"), 401, "API key")
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        assert post(url, small, "cat", headers=headers).status_code == 200


@pytest.mark.slow
def test_model_switching_when_allowed(guarded_proc, weights_dir, model):
    proc, url = guarded_proc
    auth = {"X-API-Key": KEY}
    arr = make_image(60, 80, seed=2)
    ours = post(url, png(arr), "cat", headers=auth).json()
    other = post(url, png(arr), "cat", headers=auth, sam_type="tiny_sam_other")
    assert other.status_code == 200, other.text
    assert other.json()["sam_type"] == "tiny_sam_other"
    assert other.json()["boxes"] == ours["boxes"] and other.json()["masks"] != ours["masks"]
    missing = assert_error(post(url, png(arr), "cat", headers=auth, sam_type="tiny_sam_missing"),
                           503, "'tiny_sam_missing' is not available", weights_dir)
    broken = assert_error(post(url, png(arr), "cat", headers=auth, sam_type="tiny_sam_broken"),
                          500, "'tiny_sam_broken' could not be loaded", weights_dir)
    assert "tiny_sam_missing.pth" not in missing and "tiny_sam_broken.pth" not in broken
    assert_error(post(url, png(arr), "cat", headers=auth, sam_type="vit_q"), 400, "unknown sam_type")
    log = proc.log_path.read_text()
    assert "tiny_sam_missing.pth" in log and str(weights_dir / "tiny_sam_broken.pth") in log, \
        "the operator sees the details in the server log"
    back = post(url, png(arr), "cat", headers=auth, sam_type="tiny_sam")
    assert back.status_code == 200 and back.json()["masks"] == ours["masks"]
    assert "without an API key" not in log


@pytest.mark.slow
def test_detections_are_capped_before_sam(guarded_proc, model):
    """box_threshold=0 keeps every query (60 in the tiny GroundingDINO): the 20 best are kept."""
    _, url = guarded_proc
    arr = make_image(96, 128, seed=6)
    r = post(url, png(arr), "cat", headers={"X-API-Key": KEY}, box_threshold=0, text_threshold=0)
    assert r.status_code == 200, r.text
    body = r.json()
    full = model.predict(arr, "cat", 0.0, 0.0)
    assert len(full.phrases) == 60
    keep = torch.argsort(full.logits, descending=True, stable=True)[:20].sort().values
    assert body["dropped"] == 40 and body["max_detections"] == 20
    assert len(body["masks"]) == 20 and min(body["logits"]) >= full.logits[keep].min().item()
    check_against(body, type(full)(full.masks[keep], full.boxes[keep],
                                   [full.phrases[i] for i in keep], full.logits[keep]))


@pytest.mark.slow
def test_concurrent_requests_never_mix(server, model):
    """4 clients x 3 requests over 4 images and 2 prompts, interleaved; every answer equals a
    direct predict. (Each client's requests cycle through the images, so consecutive requests
    on the lock come from different clients and images; every image is asked both prompts.)"""
    images = {seed: make_image(72, 96, seed=seed) for seed in range(4)}
    prompts = ["cat", "a remote control. dog"]
    expected = {(s, p): model.predict(images[s], p) for s in images for p in prompts}
    jobs = [(seed, prompts[(i + seed) % 2]) for i in range(3) for seed in range(4)]
    assert set(jobs) == set(expected)
    bodies = {seed: png(arr) for seed, arr in images.items()}

    def call(job):
        seed, prompt = job
        r = post(server, bodies[seed], prompt)
        return job, r.status_code, (r.json() if r.status_code == 200 else r.text)

    t0 = time.time()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(call, jobs))
    assert time.time() - t0 < 600
    assert [s for _, s, _ in results].count(200) == len(jobs), [r for r in results if r[1] != 200][:3]
    for job, _, payload in results:
        check_against(payload, expected[job])


def test_mounted_demo_asks_for_the_key(sam_ckpt, gdino_ckpt, tiny_specs):
    """With a key, /gradio is not an open door to the model: Gradio's login takes the key as
    password, and the API paths still need the header. (In-process: the real app, no socket.)"""
    pytest.importorskip("gradio")
    from fastapi.testclient import TestClient

    from lang_sam.serving.server import create_app
    from lang_sam.serving.service import ModelService

    service = ModelService(sam_type=tiny_specs[0].name, gdino_type=tiny_specs[1].name,
                           sam_ckpt=str(sam_ckpt), gdino_ckpt=str(gdino_ckpt), device="cpu")
    client = TestClient(create_app(service, api_key=KEY))
    assert client.get("/gradio/config").status_code == 401
    assert client.post("/gradio/login", data={"username": "me", "password": "wrong"}).status_code == 400
    assert client.post("/predict").status_code == 401
    assert client.post("/gradio/login", data={"username": "me", "password": KEY}).status_code == 200
    assert client.get("/gradio/config").status_code == 200
    assert client.post("/predict").status_code == 401, "the demo's login is not the API's key"


# --------------------------------------------------------------------------------------------
# Start-up: a wrong setting is one line and an exit status, never a traceback
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command,args,status,message", [
    ("serve", ["--device", "gpu"], 2, "device 'gpu' is not a device name"),
    ("app", ["--device", "cuda:3"], 2, "device 'cuda:3' is not available"),
    ("serve", ["--max-detections", "0"], 2, "max_detections must be an int >= 1, got 0"),
    ("app", ["--max-detections", "-5"], 2, "max_detections must be an int >= 1, got -5"),
    ("serve", ["--sam-type", "vit_b", "--gdino-type", "swint"], 3,
     "GroundingDINO 'swint' / SAM 'vit_b' are not available on this server"),  # both missing files
])
def test_bad_start_up_settings_exit_with_one_line(command, args, status, message, tmp_path, monkeypatch, capsys):
    """The leftover of issue 8: ``lang-sam serve/app`` with an unavailable device, a bad limit or
    missing weights printed a traceback. Now: ``lang-sam <command>: error: ...`` and exit status
    2 (a wrong setting) or 3 (weights that cannot be had), before anything listens."""
    from lang_sam.cli import main

    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))  # empty: no weights here
    monkeypatch.setenv("LANG_SAM_OFFLINE", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert main([command, *args, "--port", str(free_port())]) == status
    err = capsys.readouterr().err
    assert f"lang-sam {command}: error: {message}" in err
    assert "Traceback" not in err


def _served(kind: str, n: int = 2, H: int = 6, W: int = 8):
    """Valid served results (``kind`` masks, ``n`` detections / prompts) to break one field of."""
    from lang_sam.labeling.formats import masks_to_rle
    from lang_sam.results import ServedMasks, ServedPrediction, ServedSegmentation, ServedTracks

    dense = torch.zeros((n, H, W), dtype=torch.bool)
    dense[:, 1:3, 2:5] = True
    data = {"dense": dense, "rle": masks_to_rle(dense),
            "overlay": torch.stack([dense.any(0), dense.sum(0) > 1]) if n else dense[:0]}[kind]
    pred = dict(masks=ServedMasks(kind, data), boxes=torch.zeros((n, 4)), phrases=["a"] * n,
                logits=torch.ones(n), found=n + 1, image_size=(H, W), sam_type="s", gdino_type="g")
    seg_masks = [[r] for r in masks_to_rle(dense)] if kind == "rle" else dense[:, None]
    seg = dict(masks=ServedMasks("dense" if kind == "overlay" else kind, seg_masks), iou_scores=torch.ones((n, 1)),
               low_res_logits=torch.zeros((n, 1, 4, 4)), image_size=(H, W), sam_type="s")
    tracks = dict(frames=[{"frame_index": 0}], tracks=[], mot="", overlay=None, image_size=(H, W), fps=25.0,
                  sam_type="s", gdino_type="g", frame_count_declared=1, warnings=["short"])
    return (ServedPrediction, pred), (ServedSegmentation, seg), (ServedTracks, tracks)


@pytest.mark.parametrize("kind", ["dense", "rle", "overlay"])
def test_served_results_hold_image_size_and_one_masks_type(kind):
    (P, pred), (S, seg), (T, tracks) = _served(kind)
    p, s, t = P(**pred), S(**seg), T(**tracks)
    assert p.image_size == s.image_size == t.image_size == (6, 8) and p.dropped == 1
    assert p.masks.kind == kind and not hasattr(p, "width")
    got = {"dense": lambda: p.masks.dense.shape, "rle": lambda: len(p.masks.rle),
           "overlay": lambda: p.masks.coverage.shape}[kind]()
    assert got == {"dense": (2, 6, 8), "rle": 2, "overlay": (2, 6, 8)}[kind]
    other = "rle" if kind != "rle" else "dense"
    from lang_sam.errors import InvalidResultError

    with pytest.raises(InvalidResultError, match=f"ServedMasks.{other}"):
        getattr(p.masks, other)
    empty = P(**_served(kind, n=0)[0][1]).masks.data  # no detection: (0, H, W) masks or no RLE
    assert len(empty) == 0 and (kind == "rle" or tuple(empty.shape[1:]) == (6, 8))


@pytest.mark.parametrize("which,field,value", [
    (0, "masks", torch.zeros((2, 6, 8))),  # a bare tensor, not ServedMasks
    (0, "boxes", torch.zeros((2, 5))),
    (0, "phrases", ["a"]),
    (0, "logits", torch.ones(3)),
    (0, "found", 1),  # fewer than kept
    (0, "image_size", (6, -8)),
    (1, "iou_scores", torch.ones(2)),
    (1, "low_res_logits", torch.zeros((2, 3, 4, 4))),
    (2, "frames", [[0]]),
    (2, "mot", None),
    (2, "fps", "25"),
    (2, "frame_count_declared", -1),
    (2, "warnings", "short"),
])
def test_served_results_check_their_fields(which, field, value):
    from lang_sam.errors import InvalidResultError

    cls, kwargs = _served("rle")[which]
    with pytest.raises(InvalidResultError, match=f"{cls.__name__}.{field}: expected") as err:
        cls(**dict(kwargs, **{field: value}))
    assert err.value.field == field


@pytest.mark.parametrize("kind,size,match", [
    ("dense", (6, 9), r"\(2, 6, 9\) bool"),  # masks of another image size
    ("rle", (5, 8), r"RLE dicts of size \[5, 8\]"),
    ("overlay", (6, 7), r"\(2, 6, 7\) bool"),
])
def test_served_masks_must_fit_the_result(kind, size, match):
    from lang_sam.errors import InvalidResultError
    from lang_sam.results import ServedMasks

    (P, pred), _, _ = _served(kind)
    with pytest.raises(InvalidResultError, match=match):
        P(**dict(pred, image_size=size))
    with pytest.raises(InvalidResultError, match="ServedMasks.kind"):
        ServedMasks("png", None)
