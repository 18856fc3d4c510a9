"""Make ``assets/click_refine.png``: a screenshot of the web demo after a click refined a mask.

    python assets/make_click_refine.py [--out assets/click_refine.png] [--chromium /usr/bin/chromium]

Starts the demo (:func:`lang_sam.serving.app.build_demo`) in this process, opens it in headless
Chromium (Playwright), uploads ``assets/cat.jpg``, runs the prompt ``cat`` keeping 3 detections,
clicks once (foreground) on the overlay at the centre of the first box, and saves the page.

No real checkpoint can be downloaded where this was made, so the models are the tiny random-weight
test models (:mod:`lang_sam.testing`): the picture shows the page and what a click does (a point on
the detection under it, SAM re-run for that detection, the table counting clicks), not what real
weights would segment (random weights give texture-like masks).
"""

from __future__ import annotations

import argparse
import io
import socket
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE / "click_refine.png"))
    p.add_argument("--chromium", default="/usr/bin/chromium")
    args = p.parse_args(argv)

    from PIL import Image
    from playwright.sync_api import sync_playwright

    from lang_sam.hub import register_model
    from lang_sam.serving.app import build_demo, segment
    from lang_sam.serving.service import ModelService
    from lang_sam.testing import tiny_gdino_spec, tiny_sam_spec, write_gdino_checkpoint, write_sam_checkpoint

    sam, gdino = register_model(tiny_sam_spec()), register_model(tiny_gdino_spec())
    with tempfile.TemporaryDirectory() as tmp:
        write_sam_checkpoint(Path(tmp) / sam.filename, sam, seed=0)
        write_gdino_checkpoint(Path(tmp) / gdino.filename, gdino, seed=0)
        service = ModelService(sam_type=sam.name, gdino_type=gdino.name,
                               sam_ckpt=str(Path(tmp) / sam.filename),
                               gdino_ckpt=str(Path(tmp) / gdino.filename), device="cpu", max_detections=3)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        demo = build_demo(service).queue()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium,
                                             args=["--headless", "--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}", wait_until="load")
                page.set_input_files("#input-image input[type=file]", str(HERE / "cat.jpg"))
                page.fill("#prompt textarea", "cat")
                page.click("#run")
                page.wait_for_function(
                    "document.querySelector('#status').innerText.includes('detection(s)')", timeout=300000)
                x0, y0, x1, y1 = segment(service, str(HERE / "cat.jpg"), "cat", None, None, 0.3,
                                         0.25)[3].detections[0].box  # what the page shows
                page.locator("#output-image img").scroll_into_view_if_needed()
                cx, cy = page.evaluate(
                    """([x, y]) => {
                        const img = document.querySelector('#output-image img');
                        const r = img.getBoundingClientRect();
                        const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight, 1);
                        return [r.left + (r.width - img.naturalWidth * s) / 2 + x * s,
                                r.top + (r.height - img.naturalHeight * s) / 2 + y * s];
                    }""", [(x0 + x1) / 2, (y0 + y1) / 2])
                page.mouse.click(cx, cy)
                page.wait_for_function(
                    "document.querySelector('#status').innerText.includes('refined')", timeout=300000)
                bottom = max(page.locator(sel).bounding_box()["y"] + page.locator(sel).bounding_box()["height"]
                             for sel in ("#run", "#detections"))
                page.evaluate("window.scrollTo(0, 0)")
                shot = page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": 1500,
                                                             "height": bottom + 16})
                browser.close()
        finally:
            demo.close()
    img = Image.open(io.BytesIO(shot)).convert("RGB")
    out = Path(args.out)
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


if __name__ == "__main__":
    print(main())
