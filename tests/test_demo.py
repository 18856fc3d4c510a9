"""The web demo: the model service's type switching, and the page in a real headless Chromium."""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import make_image
from lang_sam.service import ModelService
from lang_sam.testing import tiny_sam_spec, write_sam_checkpoint
from lang_sam.weights import register_model, unregister_model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_service_switches_sam_type(tmp_path, monkeypatch, sam_ckpt, gdino_ckpt, tiny_specs):
    """The original demo crashed when the SAM dropdown changed; here it reloads SAM."""
    other = register_model(tiny_sam_spec("tiny_sam_other"))
    try:
        write_sam_checkpoint(tmp_path / other.filename, other, seed=5)
        monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))
        service = ModelService(sam_type=tiny_specs[0].name, gdino_type=tiny_specs[1].name,
                               sam_ckpt=str(sam_ckpt), gdino_ckpt=str(gdino_ckpt), device="cpu")
        img = make_image(60, 80)
        first = service.predict(img, "cat")
        steps = []
        second = service.predict(img, "cat", sam_type="tiny_sam_other",
                                 progress=lambda f, text: steps.append(text))
        assert service.info()["sam_type"] == "tiny_sam_other"
        assert any("loading SAM tiny_sam_other" in s for s in steps), steps
        assert len(first.boxes) == len(second.boxes) and not (first.masks == second.masks).all()
        service.predict(img, "cat", sam_type=tiny_specs[0].name)  # and back, from its own file
        assert service.info()["sam_type"] == tiny_specs[0].name
    finally:
        unregister_model("sam", "tiny_sam_other")


def test_demo_messages_instead_of_stack_traces(sam_ckpt, gdino_ckpt, tiny_specs):
    from lang_sam.app import segment

    service = ModelService(sam_type=tiny_specs[0].name, gdino_type=tiny_specs[1].name,
                           sam_ckpt=str(sam_ckpt), gdino_ckpt=str(gdino_ckpt), device="cpu")
    img = make_image(60, 80)
    assert "upload an image" in segment(service, None, "cat", None, None, 0.3, 0.25)[2]
    assert "prompt is empty" in segment(service, img, "  ", None, None, 0.3, 0.25)[2]
    out = segment(service, img, "cat", "vit_b", None, 0.3, 0.25)[2]  # no vit_b weights offline
    assert out.startswith("**Error:**") and "sam_vit_b_01ec64.pth" in out
    overlay, rows, msg = segment(service, img, "cat", None, None, 0.3, 0.25)
    assert overlay.shape == (60, 80, 3) and "detection" in msg and len(rows) > 0


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="needs Debian's chromium (CI installs it)")
def test_demo_in_headless_chromium(sam_ckpt, gdino_ckpt, tmp_path, model):
    """Load the page, upload an image, type a prompt, press Segment: the picture and the table appear."""
    pytest.importorskip("gradio")
    from playwright.sync_api import sync_playwright
    from PIL import Image

    from test_server import start, stop

    assert CHROMIUM, "chromium is missing: the README's test command installs it"
    arr = make_image(150, 200, seed=9)
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    expected = model.predict(arr, "cat")
    proc, url = start("app", sam_ckpt, gdino_ckpt)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page()
            page.goto(url, wait_until="networkidle")
            page.click("#run")  # nothing uploaded yet: a readable message, not a trace
            page.wait_for_function("document.querySelector('#status').innerText.includes('upload an image')",
                                   timeout=60000)
            page.set_input_files("#input-image input[type=file]", str(path))
            page.fill("#prompt textarea", "cat")
            page.click("#run")
            page.wait_for_function("document.querySelector('#status').innerText.includes('detection(s)')",
                                   timeout=120000)
            status = page.inner_text("#status")
            assert status.startswith(f"{len(expected.boxes)} detection(s)")
            src = page.get_attribute("#output-image img", "src")
            assert src, "the segmented image is shown"
            table = page.inner_text("#detections")
            assert f"{round(expected.boxes[0, 0].item(), 1)}" in table
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            browser.close()
    finally:
        stop(proc)


@pytest.mark.parametrize("command,flag", [("serve", "--max-pixels"), ("app", "--port")])
def test_cli_dispatches_serve_and_app(command, flag, capsys):
    from lang_sam.cli import main

    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0 and flag in capsys.readouterr().out
