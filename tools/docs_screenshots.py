"""Screenshots of the built documentation site, for docs/assets/ (issue 17).

    mkdocs build --strict --site-dir /tmp/site
    python tools/docs_screenshots.py /tmp/site docs/assets

Serves the built site on a free local port and photographs the home page and one guide with
headless Chromium (Playwright driving the system's ``chromium``, as tests/test_demo.py does).
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path

PAGES = {"site_home.png": "", "site_guide_prompts.png": "guides/prompts/"}


def main(site: str, out: str) -> None:
    from playwright.sync_api import sync_playwright

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=site)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for name, path in PAGES.items():
                page.goto(base + path, wait_until="networkidle")
                page.screenshot(path=str(Path(out) / name))
                print(f"{Path(out) / name}: {base + path}")
            browser.close()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
