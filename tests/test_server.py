"""The HTTP server in a subprocess on 127.0.0.1 with the tiny models: happy path, every bad
request, and bounded concurrency checked against direct LangSAM.predict calls."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, sam_ckpt, gdino_ckpt, *extra) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, str(HERE / "serve_tiny.py"), kind, "--sam-ckpt", str(sam_ckpt),
           "--gdino-ckpt", str(gdino_ckpt), "--port", str(port), *extra]
    env = {**os.environ, "LANG_SAM_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited early:\n{proc.stdout.read()}")
        try:
            if httpx.get(url + ("/health" if kind == "server" else "/"), timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{kind} did not come up:\n{proc.stdout.read()}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(sam_ckpt, gdino_ckpt):
    proc, url = start("server", sam_ckpt, gdino_ckpt, "--max-pixels", "250000", "--cache-size", "4",
                      "--no-demo")
    yield url
    stop(proc)


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def post(url, image: bytes | None, prompt, **fields):
    files = {"image": ("x.png", image, "image/png")} if image is not None else None
    data = {k: str(v) for k, v in fields.items()}
    if prompt is not None:
        data["text_prompt"] = prompt
    return httpx.post(url + "/predict", files=files, data=data, timeout=120)


def decode_masks(payload) -> torch.Tensor:
    from pycocotools import mask as mask_utils

    if not payload["masks"]:
        return torch.zeros((0, payload["height"], payload["width"]), dtype=torch.bool)
    rles = [{"size": m["size"], "counts": m["counts"].encode()} for m in payload["masks"]]
    return torch.from_numpy(mask_utils.decode(rles)).permute(2, 0, 1).bool()


def check_against(payload, expected) -> None:
    assert payload["phrases"] == expected.phrases
    assert np.allclose(payload["boxes"], expected.boxes.numpy(), atol=1e-4) or (
        len(payload["boxes"]) == 0 == len(expected.boxes))
    assert np.allclose(payload["logits"], expected.logits.numpy(), atol=1e-6)
    assert torch.equal(decode_masks(payload), expected.masks)


def test_health(server):
    body = httpx.get(server + "/health").json()
    assert body["status"] == "ok" and body["sam_type"] == "tiny_sam" and body["loaded"] is True


def test_predict_json(server, model):
    arr = make_image(120, 160, seed=21)
    r = post(server, png(arr), "a cat. a remote control", box_threshold=0.3, text_threshold=0.25)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"width", "height", "boxes", "phrases", "logits", "masks"}
    assert (body["width"], body["height"]) == (160, 120)
    assert len(body["boxes"]) > 0
    assert len(body["boxes"]) == len(body["phrases"]) == len(body["logits"]) == len(body["masks"])
    assert all(m["size"] == [120, 160] for m in body["masks"])
    check_against(body, model.predict(arr, "a cat. a remote control", 0.3, 0.25))


def test_predict_png(server):
    arr = make_image(90, 110, seed=3)
    r = post(server, png(arr), "cat", format="png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (110, 90) and out.mode == "RGB"


TOO_LONG = " ".join(f"thing{i}" for i in range(150))  # one phrase over 256 tokens


@pytest.mark.parametrize("case,status,match", [
    ("missing image", 400, "missing 'image'"),
    ("not an image", 400, "not a readable image"),
    ("too large", 413, "at most 250000"),
    ("box threshold", 400, "box_threshold"),
    ("text threshold", 400, "text_threshold"),
    ("empty prompt", 400, "text_prompt is empty"),
    ("missing prompt", 400, "'text_prompt'"),
    ("over-long prompt", 400, "tokens"),
    ("too many characters", 400, "characters"),
    ("unknown sam type", 400, "unknown sam_type"),
    ("bad format", 400, "format"),
    ("not multipart", 415, "multipart"),
])
def test_bad_requests(server, case, status, match):
    small = png(make_image(40, 50))
    if case == "missing image":  # multipart, but without the 'image' field
        r = httpx.post(server + "/predict", files={"picture": ("x.png", small, "image/png")},
                       data={"text_prompt": "cat"})
    elif case == "not an image":
        r = post(server, b"hello, not an image", "cat")
    elif case == "too large":
        r = post(server, png(np.zeros((600, 500, 3), np.uint8)), "cat")
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
    elif case == "bad format":
        r = post(server, small, "cat", format="gif")
    else:
        r = httpx.post(server + "/predict", json={"text_prompt": "cat"})
    assert r.status_code == status, r.text
    assert match in r.json()["error"]
    assert httpx.get(server + "/health").status_code == 200, "a bad request must not take the server down"


def test_concurrent_requests_never_mix(server, model):
    """4 clients x 25 requests over 4 images and 2 prompts; every answer equals a direct predict."""
    images = {seed: make_image(72, 96, seed=seed) for seed in range(4)}
    prompts = ["cat", "a remote control. dog"]
    expected = {(s, p): model.predict(images[s], p) for s in images for p in prompts}
    jobs = [(seed, prompts[(i + seed) % 2]) for i in range(25) for seed in range(4)]
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
