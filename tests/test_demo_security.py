"""Issue 18: the web demo, mounted in ``lang-sam serve`` at ``/gradio`` and standalone
(``lang-sam app``), reads and serves only files uploaded through it.

Each test runs against a real server (``tests/serve_tiny.py`` in a subprocess, uvicorn on
127.0.0.1, tiny random models) with its own ``GRADIO_TEMP_DIR`` (the upload area), so that every
file Gradio copies there can be inspected. The "secret" is a valid PNG outside the upload area
with a unique marker in a text chunk: were the demo to read it, it would run the model on it
(an ``event: complete``); were Gradio to copy it into its cache, the marker would be found there;
were it served, the marker would be in a response.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from conftest import make_image
from http_server import FileServer

httpx = pytest.importorskip("httpx")
pytest.importorskip("gradio")
pytest.importorskip("uvicorn")

from test_server import start, stop  # noqa: E402  (after the importorskips)

pytestmark = pytest.mark.slow  # every test talks to a uvicorn subprocess (two of them, one per variant)

MARKER = f"lang-sam-secret-{uuid.uuid4().hex}".encode()
PASSWD = b"root:x:0:0:"


def secret_png() -> bytes:
    info = PngInfo()
    info.add_text("secret", MARKER.decode())
    buf = io.BytesIO()
    Image.fromarray(make_image(60, 80, seed=1)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


@pytest.fixture(scope="module")
def secret(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("private") / "secret.png"
    path.write_bytes(secret_png())
    return path


@pytest.fixture(scope="module", params=["server", "app"])
def demo(request, tmp_path_factory, sam_ckpt, gdino_ckpt):
    """``(base URL of the demo, its upload area)`` for the demo mounted in the server and for the
    standalone app."""
    uploads = tmp_path_factory.mktemp("gradio-uploads")
    proc, url = start(request.param, sam_ckpt, gdino_ckpt, env={"GRADIO_TEMP_DIR": str(uploads),
                                                                "LANG_SAM_API_KEY": ""})
    yield url + ("/gradio" if request.param == "server" else ""), uploads
    stop(proc)


def call_run(base: str, image_arg) -> tuple[int, str]:
    """The two-step Gradio API call of the demo's ``run`` with ``image_arg`` as the image: the
    POST's status, and everything the client got back (the POST's body and the event stream)."""
    r = httpx.post(base + "/gradio_api/call/run",
                   json={"data": [image_arg, "cat", "tiny_sam", "tiny_gdino", 0.3, 0.25]}, timeout=60)
    text = r.text
    if r.status_code == 200:
        text += httpx.get(base + f"/gradio_api/call/run/{r.json()['event_id']}", timeout=180).text
    return r.status_code, text


def copies_of(uploads: Path, needle: bytes) -> list[Path]:
    return [p for p in uploads.rglob("*") if p.is_file() and not p.is_symlink()
            and needle in p.read_bytes()]


def upload(base: str, data: bytes, name: str = "photo.png") -> str:
    r = httpx.post(base + "/gradio_api/upload", files={"files": (name, data, "image/png")}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()[0]


def file_data(path: str, meta: bool = True) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}} if meta else {"path": path}


VARIANTS = ["the issue's request (/etc/passwd)", "absolute", "absolute, no meta", "relative",
            "through the upload area with ..", "symlink in the upload area", "http URL",
            "file URL", "nested in a list"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_file_arguments_outside_the_upload_area_are_refused(demo, secret, variant):
    """Before the fix, the mounted demo copied /etc/passwd (or the secret) into its cache, named
    the copy in the error event, and served it at ``gradio_api/file=<copy>``; without ``meta``
    Gradio's Image opened the path itself (standalone too) and the demo ran the model on it."""
    base, uploads = demo
    needle = MARKER
    with FileServer() as remote:
        remote.files["/secret.png"] = secret.read_bytes()
        if variant.startswith("the issue's"):
            arg, needle = file_data("/etc/passwd"), PASSWD
        elif variant == "absolute":
            arg = file_data(str(secret))
        elif variant == "absolute, no meta":
            arg = file_data(str(secret), meta=False)
        elif variant == "relative":  # resolved against the server's working directory (ours)
            arg = file_data(os.path.relpath(secret, os.getcwd()))
        elif variant == "through the upload area with ..":
            arg = file_data(str(uploads) + "/.." * len(uploads.parts) + str(secret))
        elif variant == "symlink in the upload area":
            link = uploads / f"planted-{uuid.uuid4().hex}" / "photo.png"
            link.parent.mkdir()
            link.symlink_to(secret)
            arg = file_data(str(link))
        elif variant == "http URL":
            arg = file_data(remote.url + "/secret.png")
        elif variant == "file URL":
            arg = file_data(f"file://{secret}")
        else:
            arg = [file_data(str(secret))]
        status, answer = call_run(base, arg)
        assert remote.requests == [], "the server fetched a URL a client named"
    assert needle.decode() not in answer
    assert "event: complete" not in answer, "the demo ran on a file that was not uploaded"
    assert status == 403 and json.loads(answer) == {
        "error": "this demo accepts only files uploaded through it"}, answer
    copies = copies_of(uploads, needle)
    for copy in copies:  # what the issue's attacker did next
        served = httpx.get(base + f"/gradio_api/file={copy}", timeout=30)
        assert needle not in served.content, f"{copy} was served"
    assert copies == [], "a file from outside the upload area was copied into it"


@pytest.mark.parametrize("variant", ["absolute", "relative", "through the upload area with ..",
                                     "symlink in the upload area", "http URL", "old file/ route",
                                     "/etc/passwd"])
def test_file_route_serves_only_the_upload_area(demo, secret, variant):
    """``GET gradio_api/file=<path>`` on anything but a file in the upload area: 403, no content.
    (Gradio's own check already refused most of these before the fix; the guard makes it not
    depend on that.)"""
    base, uploads = demo
    route, needle = "/gradio_api/file=", MARKER
    with FileServer() as remote:
        remote.files["/secret.png"] = secret.read_bytes()
        if variant == "absolute":
            target = str(secret)
        elif variant == "relative":
            target = os.path.relpath(secret, os.getcwd())
        elif variant == "through the upload area with ..":
            target = str(uploads) + "/.." * len(uploads.parts) + str(secret)
        elif variant == "symlink in the upload area":
            link = uploads / f"planted-{uuid.uuid4().hex}" / "photo.png"
            link.parent.mkdir()
            link.symlink_to(secret)
            target = str(link)
        elif variant == "http URL":
            target = remote.url + "/secret.png"
        elif variant == "old file/ route":
            route, target = "/gradio_api/file/", str(secret)
        else:
            target, needle = "/etc/passwd", PASSWD
        # percent-encoded (as Gradio's client does), so that no client-side URL normalisation
        # removes the ".." segments
        r = httpx.get(base + route + quote(target, safe=""), timeout=30)
        assert remote.requests == []
    assert needle not in r.content
    assert r.status_code == 403, r.text


def test_uploads_still_work_and_errors_name_nothing(demo):
    """The page's own path: a file uploaded through ``gradio_api/upload`` lands in the area the
    guard allows (the guard reads Gradio's upload folder; were that to move, this fails), the
    demo runs on it and its result is served. A non-image upload is refused without Gradio's
    exception text (it named the temp path and ``UnidentifiedImageError`` before the fix)."""
    base, uploads = demo
    path = upload(base, _png(make_image(60, 80)))
    assert Path(path).resolve().is_relative_to(uploads.resolve())
    status, answer = call_run(base, file_data(path))
    assert status == 200 and "event: complete" in answer, answer
    result = json.loads(answer.split("event: complete\ndata: ", 1)[1].split("\n", 1)[0])[0]
    served = httpx.get(base + f"/gradio_api/file={result['path']}", timeout=30)
    assert served.status_code == 200 and served.content.startswith(b"\x89PNG")

    bad = upload(base, b"not an image at all", "bad.png")
    status, answer = call_run(base, file_data(bad))
    assert status == 200 and "event: error" in answer, answer
    for leak in (str(uploads), "/tmp", "Error:", "UnidentifiedImageError", "ComponentProcessingError",
                 "Traceback"):
        assert leak not in answer, f"{leak!r} in {answer!r}"
    assert not re.search(r"0x[0-9a-fA-F]{6,}", answer)


def test_example_images_are_still_served(demo):
    """The example images of ``assets/`` are shown from Gradio's cache, inside the upload area."""
    base, uploads = demo
    config = httpx.get(base + "/config", timeout=30).json()
    paths = set(re.findall(r'"path": "([^"]+\.jpg)"', json.dumps(config)))
    assert {Path(p).name for p in paths} >= {"cat.jpg", "coffee.jpg", "astronaut.jpg"}, paths
    for path in paths:
        assert Path(path).resolve().is_relative_to(uploads.resolve())
        served = httpx.get(base + "/gradio_api/file=" + quote(path, safe=""), timeout=30)
        assert served.status_code == 200 and served.content[:2] == b"\xff\xd8", path


def test_deeply_nested_json_is_a_400(demo):
    base, _ = demo
    r = httpx.post(base + "/gradio_api/call/run", content=b"[" * 100_000,
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 400 and "deeper than 64" in r.json()["error"], r.text


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Issue 25: the guard decided from the last Content-Type header, the framework parsed by the first
# --------------------------------------------------------------------------------------------

def raw_request(base: str, path: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, str]:
    """POST ``body`` to ``base + path`` over a plain socket with exactly ``headers`` (in this order,
    these cases, repeats kept: HTTP clients merge or refuse some of them); the status and what came
    back. When the demo accepted the call (200 and an event id), the event stream is added."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(base + path)
    request = (f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode() + body
    with socket.create_connection((url.hostname, url.port), timeout=60) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, content = answer.partition(b"\r\n\r\n")
    status, text = int(head.split()[1]), content.decode(errors="replace")
    if status == 200 and "event_id" in text:
        event = re.search(r'"event_id":\s*"([0-9a-f]+)"', text)[1]
        if "/call/" in path:
            text += httpx.get(base + path + "/" + event, timeout=180).text
        else:
            session = json.loads(body)["session_hash"]
            with httpx.stream("GET", base + "/gradio_api/queue/data", params={"session_hash": session},
                              timeout=180) as stream:
                for line in stream.iter_lines():
                    text += line + "\n"
                    if "process_completed" in line:
                        break
    return status, text


def chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


JSON_TYPE, MULTIPART = ("content-type", "application/json"), ("content-type", "multipart/form-data; boundary=x")
#: (headers without the length, how the body is framed) for each variant of the two-header request
FRAMING = {
    "the issue's request": ([JSON_TYPE, MULTIPART], "length"),
    "reversed": ([MULTIPART, JSON_TYPE], "length"),
    "names in other cases": ([("Content-Type", "application/json"),
                              ("CONTENT-TYPE", "multipart/form-data; boundary=x")], "length"),
    "the same type twice": ([JSON_TYPE, JSON_TYPE], "length"),
    "two types, chunked body": ([JSON_TYPE, MULTIPART, ("Transfer-Encoding", "chunked")], "chunked"),
    "Content-Length and Transfer-Encoding": ([JSON_TYPE, ("Transfer-Encoding", "chunked")], "both"),
    "two Transfer-Encodings": ([JSON_TYPE, ("Transfer-Encoding", "chunked"),
                                ("transfer-encoding", "chunked")], "chunked"),
    "two different Content-Lengths": ([JSON_TYPE, ("content-length", "5")], "length"),
}
#: the demo's calls that take a file: (path, the JSON body given the file argument)
ENDPOINTS = {
    "image tab (call/run)": ("/gradio_api/call/run",
                             lambda f: {"data": [f, "cat", "tiny_sam", "tiny_gdino", 0.3, 0.25]}),
    "video tab (call/run_1)": ("/gradio_api/call/run_1", lambda f: {"data": [f, "cat", 0.3, 0.25, 3]}),
    "queue/join": ("/gradio_api/queue/join", lambda f: {
        "data": [f, "cat", "tiny_sam", "tiny_gdino", 0.3, 0.25], "fn_index": 1,
        "session_hash": uuid.uuid4().hex[:11]}),
}


def framed(headers: list, framing: str, body: bytes) -> tuple[list, bytes]:
    if framing == "length":
        return headers + [("Content-Length", str(len(body)))], body
    if framing == "both":
        return headers + [("Content-Length", str(len(chunked(body))))], chunked(body)
    return headers, chunked(body)


def assert_nothing_leaked(status: int, answer: str, uploads: Path, before: list[Path], expected: int = 400):
    """No marker in the answer, no model run, no new copy of the secret (``before``: the copies
    found before the request; a test that failed earlier in the module may have left some)."""
    assert MARKER.decode() not in answer
    assert "event: complete" not in answer and "process_completed" not in answer, answer
    assert set(copies_of(uploads, MARKER)) <= set(before), "the secret was copied into the upload area"
    assert status == expected, answer


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("variant", FRAMING)
def test_repeated_framing_headers_are_refused(demo, secret, variant, endpoint):
    """The issue's request (a JSON body naming a server file, ``Content-Type: application/json``
    and then ``multipart/form-data``): the mounted demo ran the model on the secret and copied it
    into its cache; the standalone app was saved by Gradio's own check only. Now a request with a
    repeated Content-Type, Content-Length or Transfer-Encoding, or with both of the last two, is a
    400 before anything reads it (uvicorn's HTTP parser refuses some of these first: 400 too)."""
    base, uploads = demo
    path, make = ENDPOINTS[endpoint]
    headers, body = framed(*FRAMING[variant], json.dumps(make(file_data(str(secret)))).encode())
    before = copies_of(uploads, MARKER)
    status, answer = raw_request(base, path, headers, body)
    assert_nothing_leaked(status, answer, uploads, before)
    if answer.startswith("{"):  # ours, not uvicorn's
        assert "more than one" in json.loads(answer)["error"] or "both" in json.loads(answer)["error"]


@pytest.mark.parametrize("declared", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
    "multipart/form-data; boundary=x", 'multipart/form-data; boundary="{"', "application/octet-stream",
    "application/json; charset=utf-8", None,
])
def test_json_bodies_are_checked_whatever_their_declared_type(demo, secret, declared):
    """One Content-Type, but not JSON's: the guard let form and multipart bodies through
    unread (Gradio parsed them as JSON only when a second header said so, but nothing else must
    depend on that). Now every body that parses as JSON is checked; only a multipart body that
    starts with its boundary (a real upload) streams through unread."""
    base, uploads = demo
    body = json.dumps(ENDPOINTS["image tab (call/run)"][1](file_data(str(secret)))).encode()
    headers = ([("Content-Type", declared)] if declared else []) + [("Content-Length", str(len(body)))]
    before = copies_of(uploads, MARKER)
    status, answer = raw_request(base, "/gradio_api/call/run", headers, body)
    assert_nothing_leaked(status, answer, uploads, before, expected=403)
    assert json.loads(answer) == {"error": "this demo accepts only files uploaded through it"}


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, sam_ckpt, gdino_ckpt):
    """A server with an API key (the demo's login password) and its own upload area."""
    uploads = tmp_path_factory.mktemp("gradio-uploads-keyed")
    proc, url = start("server", sam_ckpt, gdino_ckpt, "--api-key", "k" * 20,
                      env={"GRADIO_TEMP_DIR": str(uploads), "LANG_SAM_API_KEY": ""})
    yield url + "/gradio", uploads
    stop(proc)


def test_the_issues_request_after_login_on_a_server_with_a_key(keyed_server, secret):
    """The issue: the request worked after logging in to the demo of a server with an API key.
    Logged in (the upload and a normal run work with the session's cookie), it is a 400 all the
    same, and nothing is copied."""
    base, uploads = keyed_server
    with httpx.Client(timeout=180) as client:
        assert client.post(base + "/gradio_api/call/run", json={"data": []}).status_code in (401, 403)
        login = client.post(base + "/login", data={"username": "me", "password": "k" * 20})
        assert login.status_code in (200, 302, 303) and client.cookies, login.text
        path = client.post(base + "/gradio_api/upload",
                           files={"files": ("photo.png", _png(make_image(60, 80)), "image/png")}).json()[0]
        ok = client.post(base + "/gradio_api/call/run",
                         json=ENDPOINTS["image tab (call/run)"][1](file_data(path)))
        assert ok.status_code == 200, ok.text
        assert "event: complete" in client.get(base + f"/gradio_api/call/run/{ok.json()['event_id']}").text
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    for endpoint in ("image tab (call/run)", "video tab (call/run_1)"):
        body = json.dumps(ENDPOINTS[endpoint][1](file_data(str(secret)))).encode()
        headers, body = framed([JSON_TYPE, MULTIPART, ("Cookie", cookie)], "length", body)
        status, answer = raw_request(base, ENDPOINTS[endpoint][0], headers, body)
        assert_nothing_leaked(status, answer, uploads, [])


# --------------------------------------------------------------------------------------------
# Issue 25, item 3: malformed calls to the demo are never a 5xx
# --------------------------------------------------------------------------------------------

def join(fn_index, data, **extra) -> dict:
    return {"data": data, "fn_index": fn_index, "session_hash": uuid.uuid4().hex[:11], **extra}


RUN, ON_CLICK = 1, 2  # the demo's fn_index values of the image tab's run and of its click handler
#: (call, route, JSON body, the status, a text the answer holds). The 404s were 500s before
#: (Gradio looked the name or number up and raised); the direct .../run/<name> route answered a
#: handler's error with 500. The 200s are Gradio's error events (or the demo's messages).
MALFORMED = [
    ("an unknown API name", "/gradio_api/call/nope", {"data": []}, 404, "no API endpoint named 'nope'"),
    ("an unknown name, direct route", "/gradio_api/run/predict", {"data": []}, 404, "no API endpoint"),
    ("an unknown name, old route", "/gradio_api/api/nope", {"data": []}, 404, "no API endpoint"),
    ("a handler's direct route", "/gradio_api/run/run", {"data": []}, 404, "join the queue"),
    ("an unknown fn_index", "/gradio_api/queue/join", join(99, []), 404, "no function 99"),
    ("a negative fn_index", "/gradio_api/queue/join", join(-1, []), 404, "no function -1"),
    ("a fn_index in a string", "/gradio_api/queue/join", join("99", []), 404, "no function 99"),
    ("a huge fn_index", "/gradio_api/queue/join", join(10**30, []), 404, "no function 1000"),
    ("a fn_index that is not a number", "/gradio_api/queue/join", join("run", []), 422, "fn_index"),
    ("cancel an unknown fn_index", "/gradio_api/cancel",
     {"session_hash": "s", "fn_index": 99, "event_id": "e"}, 404, "no function 99"),
    ("the component server", "/gradio_api/component_server",
     {"component_id": 999, "fn_name": "x", "data": None, "session_hash": "s"}, 404, "no server functions"),
    ("no arguments", "/gradio_api/call/run", {"data": []}, 200, "event: error"),
    ("a number for the image", "/gradio_api/call/run", {"data": [5, "cat"]}, 200, "event: error"),
    ("a string for the image", "/gradio_api/call/run", {"data": ["/etc/passwd", "cat"]}, 200, "event: error"),
    ("a dict for the prompt", "/gradio_api/call/run", {"data": [None, {"a": 1}]}, 200, "event: error"),
    ("sliders out of range", "/gradio_api/call/run",
     {"data": [None, "cat", "tiny_sam", "tiny_gdino", 5, -3]}, 200, "greater than maximum"),
    ("a dict for a slider", "/gradio_api/call/run",
     {"data": [None, "cat", "tiny_sam", "tiny_gdino", {"a": 1}, 0.25]}, 200, "event: error"),
    ("an unknown model type", "/gradio_api/call/run",
     {"data": [None, "cat", "nope", "tiny_gdino", 0.3, 0.25]}, 200, "not in the list of choices"),
    ("a click without event data", "/gradio_api/call/on_click", {"data": ["foreground"]}, 200, "event: error"),
    ("a click with a garbage index", "/gradio_api/queue/join",
     join(ON_CLICK, [None, "foreground"], event_data={"index": "x", "value": None}), 200,
     "a click gives the pixel"),
    ("a click with no index", "/gradio_api/queue/join",
     join(ON_CLICK, [None, "foreground"], event_data=None), 200, "process_completed"),
    ("reset with garbage", "/gradio_api/call/reset", {"data": ["garbage", 1, 2]}, 200, "Nothing to reset"),
    ("video: no video", "/gradio_api/call/run_1", {"data": [None, "cat", 0.3, 0.25, 3]}, 200,
     "upload a video first"),
    ("video: detect every 0", "/gradio_api/call/run_1", {"data": [None, "cat", 0.3, 0.25, 0]}, 200,
     "event: error"),
    ("video: a string for detect every", "/gradio_api/call/run_1",
     {"data": [None, "cat", 0.3, 0.25, "x"]}, 200, "event: error"),
    ("a list for the body", "/gradio_api/queue/join", [1, 2], 422, "dictionary"),
]


@pytest.mark.parametrize("call, route, body, status, needle", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_demo_calls_are_never_a_5xx(demo, call, route, body, status, needle):
    base, _ = demo
    data = json.dumps(body).encode()
    got, answer = raw_request(base, route, [JSON_TYPE, ("Content-Length", str(len(data)))], data)
    assert got < 500 and got == status, answer
    assert needle in answer, answer
    assert "Traceback" not in answer and "Internal Server Error" not in answer
    if got == 404:  # the guard's JSON error, or Gradio's for the closed direct route
        assert set(json.loads(answer)) == ({"detail"} if "join the queue" in needle else {"error"}), answer


# --------------------------------------------------------------------------------------------
# Each layer on its own
# --------------------------------------------------------------------------------------------

def test_gradios_own_upload_check_is_on_in_the_mounted_demo(tmp_path, monkeypatch, secret, sam_ckpt,
                                                           gdino_ckpt, tiny_specs):
    """With both of our middleware layers taken out of the server, the issue's request still
    reads nothing: Gradio's own "was this uploaded?" check, which ``launch()`` turns on and a mount
    did not (``check_uploads``), refuses the file before copying it. A file uploaded first still
    works."""
    from fastapi.testclient import TestClient

    from lang_sam.serving.guards import FramingHeaderGuard, UploadOnlyGuard
    from lang_sam.serving.server import create_app
    from lang_sam.serving.service import ModelService

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    service = ModelService(sam_type=tiny_specs[0].name, gdino_type=tiny_specs[1].name,
                           sam_ckpt=str(sam_ckpt), gdino_ckpt=str(gdino_ckpt), device="cpu")
    app = create_app(service)
    layers = [m.cls for m in app.user_middleware]
    assert layers[0] is FramingHeaderGuard and UploadOnlyGuard in layers  # the outermost is ours
    app.user_middleware = [m for m in app.user_middleware if m.cls not in (FramingHeaderGuard, UploadOnlyGuard)]
    body = json.dumps(ENDPOINTS["image tab (call/run)"][1](file_data(str(secret))))
    with TestClient(app) as client:
        r = client.post("/gradio/gradio_api/call/run", content=body, headers=[JSON_TYPE, MULTIPART])
        assert r.status_code == 200, r.text  # no guard: Gradio takes the call
        answer = client.get(f"/gradio/gradio_api/call/run/{r.json()['event_id']}").text
        assert "event: error" in answer and MARKER.decode() not in answer, answer
        assert copies_of(uploads, MARKER) == [], "Gradio copied a file that was not uploaded"

        path = client.post("/gradio/gradio_api/upload",
                           files={"files": ("photo.png", _png(make_image(60, 80)), "image/png")}).json()[0]
        r = client.post("/gradio/gradio_api/call/run",
                        json=ENDPOINTS["image tab (call/run)"][1](file_data(path)))
        assert "event: complete" in client.get(f"/gradio/gradio_api/call/run/{r.json()['event_id']}").text
