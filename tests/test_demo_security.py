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
    for copy in copies:  # what the attacker did next
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
