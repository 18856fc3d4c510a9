"""Every example in README.md and docs/**/*.md runs (issue 17, item 2).

Each fenced ``python`` block is executed in-process, and each ``bash`` block line by line in a
shell, against tiny random-weight models of the real architectures registered under the real
names: ``LangSAM()`` (vit_h + Swin-B), ``--sam-type vit_b``, ``python -m lang_sam.testing --sam vit_b``
all get the tiny networks, through the same resolution and loading path
(``LANG_SAM_WEIGHTS_DIR`` + ``LANG_SAM_OFFLINE=1``) as real checkpoints. A block runs in a
fresh namespace, in a temporary working folder holding ``assets/`` and ``examples/`` (links to the
repository's), so it is self-contained and its files land in the temporary folder.

Not run:

- a block whose previous line is ``<!-- docs:skip REASON -->`` (real weights, a GPU, a running
  server, an install; the reason is required and shown in the test id's skip message);
- a ``bash`` block after a ``<!-- ci:... -->`` or ``<!-- cpu:... -->`` marker: the README's set-up
  commands, which ``.ci/run`` executes verbatim (``ci:``) or ``tests/test_readme.py`` checks
  (``cpu:``);
- blocks in another language (``text``, ``yaml``, ``json``, a layout drawing).

Cost: 25 tests (24 distinct blocks) took 431 s of wall time in the 35-minute suite of 2026-11-30
(a slow day for the 2-core machine); the shell blocks (7, each starting one or two fresh
interpreters that import torch, transformers and groundingdino: 6-10 s each) are most of it. They and
the tiling / batch examples are marked slow; the quick loop keeps the Python ones.

A new model family whose architecture record is not a ``SamArch`` / ``GDinoArch`` gets its tiny
stand-in in :data:`TINY_FOR` (or its examples are marked ``docs:skip``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SKIP = re.compile(r"^<!--\s*docs:skip\b\s*(.*?)\s*-->$")
CI_MARK = re.compile(r"^<!--\s*(ci|cpu):\w+\s*-->$")
RUN_LANGS = {"python", "py", "bash", "sh", "shell", "console"}


@dataclasses.dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # why it is not run, or None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def extract_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page`` (indented fences too, e.g. inside list items)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            indent = len(lines[i]) - len(lines[i].lstrip())
            lang = stripped[3:].strip().split()[0].lower() if stripped[3:].strip() else ""
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
                i += 1
            prev = lines[start - 1].strip() if start > 0 else ""
            skip = None
            if m := SKIP.match(prev):
                if not m[1]:
                    raise AssertionError(f"{page}:{start + 1}: docs:skip needs a reason")
                skip = m[1]
            elif CI_MARK.match(prev):
                skip = "a set-up command: .ci/run runs the ci: ones verbatim, tests/test_readme.py checks cpu:"
            elif lang not in RUN_LANGS:
                skip = f"not code to run ({lang or 'no language'})"
            out.append(Block(page, start + 1, lang, "\n".join(body) + "\n", skip))
        i += 1
    return out


BLOCKS = [b for page in PAGES for b in extract_blocks(page)]
RUNNABLE = [b for b in BLOCKS if b.skip is None]
#: The runnable blocks, each distinct code once (the first place it appears): the same command on
#: two pages (the README's and the home page's labelling command) runs once, named after both.
DISTINCT: dict[str, list[Block]] = {}
for _b in RUNNABLE:
    DISTINCT.setdefault(_b.code, []).append(_b)


def _tiny_stand_ins() -> dict[type, object]:
    from lang_sam.models.detector import GDinoArch
    from lang_sam.models.sam2 import Sam2Arch
    from lang_sam.models.segmenter import SamArch
    from lang_sam.testing import TINY_GDINO_SWINB, TINY_SAM, TINY_SAM2_VIDEO

    # TINY_GDINO_SWINB for every GroundingDINO (Swin-T and Swin-B alike: both have tiny widths);
    # SAM 2.1's 256-px one, which the video examples need
    return {SamArch: TINY_SAM, GDinoArch: TINY_GDINO_SWINB, Sam2Arch: TINY_SAM2_VIDEO}


#: Architecture record type -> its tiny stand-in (filled on first use; a new family adds its own).
TINY_FOR: dict[type, object] = {}

#: Put on PYTHONPATH for the shell blocks: every Python started there that can import lang-sam
#: registers the tiny stand-ins (another Python, as ``python3 -m venv``, is left alone).
SITECUSTOMIZE = """\
import importlib.util, sys
if importlib.util.find_spec("lang_sam") is not None:
    sys.path.insert(0, {tests!r})
    import test_docs_examples
    test_docs_examples.install_tiny()
"""


def write_site(folder: Path) -> Path:
    """Write :data:`SITECUSTOMIZE` into ``folder`` (to put on ``PYTHONPATH``); return its path."""
    path = folder / "sitecustomize.py"
    path.write_text(SITECUSTOMIZE.format(tests=str(ROOT / "tests")), encoding="utf-8")
    return path


def install_tiny(weights: Path | None = None) -> list:
    """Re-register every model type whose architecture has a tiny stand-in with that stand-in (same
    name and file name), and write its random checkpoint into ``weights`` if given. Returns the
    original entries, for :func:`restore`."""
    from lang_sam.models.registry import register_model, registered_specs
    from lang_sam.models.sam2 import Sam2Arch
    from lang_sam.testing import write_gdino_checkpoint, write_sam2_checkpoint, write_sam_checkpoint

    TINY_FOR.update({k: v for k, v in _tiny_stand_ins().items() if k not in TINY_FOR})
    # A few boxes per image, not the 60 queries random weights all score over 0.3: SAM decodes
    # one mask per box, and the examples only need some.
    photos = [str(ROOT / "assets" / name) for name in ("cat.jpg", "coffee.jpg")]
    write = {"sam": lambda path, spec: (write_sam2_checkpoint(path, spec, seed=0)
                                        if isinstance(spec.arch, Sam2Arch) else write_sam_checkpoint(path, spec, seed=0)),
             "gdino": lambda path, spec: write_gdino_checkpoint(path, spec, seed=0, few_boxes=True,
                                                                target_boxes=3, calibration_image=photos)}
    originals, written = [], {}
    for family in ("sam", "gdino"):
        for spec in registered_specs(family):
            tiny = TINY_FOR.get(type(spec.arch))
            if tiny is None:
                continue
            originals.append(spec)
            # sha256=None: the published checksum is that of the real file, not of this stand-in
            stand_in = register_model(dataclasses.replace(spec, arch=tiny, sha256=None), overwrite=True)
            if weights is None:
                continue
            first = written.setdefault((family, id(tiny)), weights / spec.filename)
            if first == weights / spec.filename:
                write[family](first, stand_in)
            else:  # the same stand-in under another name: the same bytes
                os.link(first, weights / spec.filename)
    return originals


def restore(originals: list) -> None:
    from lang_sam.models.registry import register_model

    for spec in originals:
        register_model(spec, overwrite=True)


#: The session's folders of stand-in checkpoints and sitecustomize, by its base temporary folder:
#: the docs examples and the notebook share one writing (30-60 s on 2 cores).
_WRITTEN: dict[Path, tuple[Path, Path]] = {}


def _written_once(tmp_path_factory) -> tuple[Path, Path]:
    key = tmp_path_factory.getbasetemp()
    if key not in _WRITTEN:
        weights = tmp_path_factory.mktemp("docs_weights")
        restore(install_tiny(weights))
        site = tmp_path_factory.mktemp("docs_site")
        write_site(site)
        _WRITTEN[key] = weights, site
    return _WRITTEN[key]


@contextlib.contextmanager
def tiny_weights_and_site(tmp_path_factory) -> Iterator[tuple[Path, Path]]:
    """The tiny stand-ins registered here and their checkpoints written under the real file names
    (the weights folder), and a folder holding the ``sitecustomize`` that registers them in any
    Python started with it on ``PYTHONPATH``; the real entries are restored on exit."""
    weights, site = _written_once(tmp_path_factory)
    originals = install_tiny()
    try:
        yield weights, site
    finally:
        restore(originals)


@pytest.fixture(scope="module")
def docs_env(tmp_path_factory):
    """The tiny weights under the real names, a working folder with assets/ and examples/, and a
    bin/ folder whose ``python`` and ``lang-sam`` see the tiny registrations."""
    with tiny_weights_and_site(tmp_path_factory) as (weights, site):
        yield _docs_env(tmp_path_factory, weights, site)


def _docs_env(tmp_path_factory, weights: Path, site: Path) -> dict:
    bindir = tmp_path_factory.mktemp("docs_bin")
    pythonpath = os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])
    for name, run in (("python", '"$@"'), ("python3", '"$@"'), ("lang-sam", '-m lang_sam "$@"')):
        script = bindir / name
        script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {run}\n")
        script.chmod(0o755)
    return {"weights": weights, "bin": bindir, "pythonpath": pythonpath}


@pytest.fixture
def workdir(tmp_path, monkeypatch, docs_env):
    for name in ("assets", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "photos").mkdir()  # the examples' "a folder of your photos"
    for name in ("cat.jpg", "coffee.jpg"):
        (tmp_path / "photos" / name).symlink_to(ROOT / "assets" / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(docs_env["weights"]))
    monkeypatch.setenv("LANG_SAM_OFFLINE", "1")
    return tmp_path


def test_the_collector_finds_the_examples_and_few_are_skipped():
    """README.md's example is among those run, and the blocks marked ``docs:skip`` stay fewer than
    half of the code blocks (each has its reason: :func:`extract_blocks` refuses one without)."""
    assert any(b.page.name == "README.md" and b.lang == "python" for b in RUNNABLE)
    marked = [b for b in BLOCKS if b.lang in RUN_LANGS and b.skip and not b.skip.startswith("a set-up")]
    assert len(marked) < len(RUNNABLE), [(b.id, b.skip) for b in marked]


def _param(blocks: list[Block]):
    """A shell block starts fresh interpreters (torch and the models imported again, 5-10 s each on
    2 cores) and runs whole commands: slow. A Python block runs in this process on the shared
    tiny models, in seconds, unless it is listed in SLOW_PYTHON. ``blocks``: the places of one
    code (the test is named after each)."""
    block = blocks[0]
    slow = block.lang not in ("python", "py") or any(word in block.code for word in SLOW_PYTHON)
    return pytest.param(block, id="=".join(b.id for b in blocks), marks=[pytest.mark.slow] if slow else [])


#: Python examples that cost over ~10 s on the tiny models (every tile of an image through both
#: networks; many prompts and images in one block).
SLOW_PYTHON = ("tile=TileSpec(", "predict_batch(")


@pytest.mark.parametrize("block", [_param(places) for places in DISTINCT.values()])
def test_docs_example_runs(block, workdir, docs_env):
    if block.lang in ("python", "py"):
        scope = {"__name__": "__docs_example__"}
        exec(compile(block.code, block.id, "exec"), scope)  # noqa: S102 - the documentation's own code
        return
    env = {**os.environ, "PATH": f"{docs_env['bin']}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": docs_env["pythonpath"], "LANG_SAM_WEIGHTS_DIR": str(docs_env["weights"]),
           "LANG_SAM_OFFLINE": "1"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{block.id} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
