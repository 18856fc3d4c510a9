"""Byte-compare what two checkouts of lang-sam write, on the labelling and tracking tests: a
refactoring must leave every output file as it was.

    python benchmarks/ab_outputs.py run <checkout> <dest>      # the tests' files, kept in <dest>
    python benchmarks/ab_outputs.py diff <dest-a> <dest-b>     # what differs, file by file

``run`` runs the test modules below from ``<checkout>`` (its own ``tests/``, its ``lang_sam`` first on
``PYTHONPATH``, so subprocesses such as ``python -m lang_sam`` use it too) with one fixed
``--basetemp``, so each test's ``tmp_path`` has the same name in both runs, then moves that folder
to ``<dest>``. ``diff`` compares every file under the two folders: byte-equal, or for JSON files
equal once the keys that hold times (see ``VOLATILE``) are dropped; it prints the files only one
side has, the files that differ, and counts. Tests that exist on one side only show up as
one-sided folders. Exit status 1 when a file common to both differs.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

MODULES = [
    "tests/test_output_folder.py", "tests/test_failure_policy.py", "tests/test_cli.py",
    "tests/test_generate.py", "tests/test_everything_export.py", "tests/test_exports.py",
    "tests/test_track_cli.py", "tests/test_tracking.py", "tests/test_video_formats.py",
]
BASETEMP = Path("/tmp/ab-outputs-basetemp")
#: JSON keys whose values are clock readings or durations, not outputs.
VOLATILE = re.compile(r"(seconds|elapsed|duration|started|finished|per_second|_at|time|pid)$")


def run(checkout: Path, dest: Path) -> int:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           f"--basetemp={BASETEMP}", *MODULES]
    rc = subprocess.call(cmd, cwd=checkout, env=env)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(str(BASETEMP), dest)
    return rc


def _scrub(value):
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _same(a: Path, b: Path) -> bool:
    da, db = a.read_bytes(), b.read_bytes()
    if da == db:
        return True
    if a.suffix == ".json":
        try:
            return _scrub(json.loads(da)) == _scrub(json.loads(db))
        except ValueError:
            return False
    return False


def diff(a: Path, b: Path) -> int:
    fa = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    fb = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    common = sorted(fa & fb)
    differ = [p for p in common if not _same(a / p, b / p)]
    for p in sorted(fa - fb):
        print(f"only in {a.name}: {p}")
    for p in sorted(fb - fa):
        print(f"only in {b.name}: {p}")
    for p in differ:
        print(f"DIFFERS: {p}")
    print(f"{len(common)} files in both, {len(differ)} differ; {len(fa - fb)} only in {a}, "
          f"{len(fb - fa)} only in {b}")
    return 1 if differ else 0


if __name__ == "__main__":
    what, x, y = sys.argv[1], Path(sys.argv[2]).resolve(), Path(sys.argv[3]).resolve()
    sys.exit(run(x, y) if what == "run" else diff(x, y))
