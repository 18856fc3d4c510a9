"""The README's install commands stay consistent: the CPU-only variants are the CI-run commands with
only the torch install moved to PyTorch's CPU index, same pinned versions (issue 19, item 7).

``.ci/run`` executes the ``ci:`` commands verbatim; the ``cpu:`` ones cannot be run where this is
built (that index is unreachable), so this is what keeps them from drifting."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PIN = re.compile(r"pip install (torch==\S+ torchvision==\S+) (-e \S+)")


def readme_cmd(tag: str, text: str | None = None) -> str:
    """The fenced block after the line ``<!-- tag -->``, as ``.ci/run``'s ``readme_cmd`` reads it."""
    lines = (README.read_text() if text is None else text).splitlines()
    try:
        start = lines.index(f"<!-- {tag} -->")
    except ValueError:
        raise AssertionError(f"README.md has no <!-- {tag} --> block") from None
    out, inside = [], False
    for line in lines[start + 1:]:
        if line.startswith("```"):
            if inside:
                break
            inside = True
            continue
        if inside:
            out.append(line)
    return "\n".join(out)


def cpu_variant(ci_cmd: str) -> str:
    """``ci_cmd`` with its one ``pip install torch==A torchvision==B -e X`` split in two: the pinned
    torch from PyTorch's CPU index, then the package."""
    found = PIN.findall(ci_cmd)
    assert len(found) == 1, f"one pinned torch install expected in {ci_cmd!r}"
    return PIN.sub(lambda m: f"pip install {m[1]} --index-url {CPU_INDEX} && pip install {m[2]}", ci_cmd)


@pytest.mark.parametrize("which", ["main", "test"])
def test_cpu_command_is_the_ci_command_with_torch_from_the_cpu_index(which):
    ci, cpu = readme_cmd(f"ci:{which}"), readme_cmd(f"cpu:{which}")
    assert ci and "\n" not in ci and CPU_INDEX not in ci
    assert cpu == cpu_variant(ci)


def test_both_ci_commands_pin_the_same_versions():
    pins = {PIN.search(readme_cmd(f"ci:{w}"))[1] for w in ("main", "test")}
    assert len(pins) == 1, pins


def test_the_parser_here_reads_what_ci_reads():
    """``.ci/run``'s own ``readme_cmd`` (bash + awk) gives the same commands as :func:`readme_cmd`."""
    run = (ROOT / ".ci" / "run").read_text()
    func = run[run.index("readme_cmd() {"):]
    func = func[:func.index("\n}\n") + 3]
    for tag in ("ci:main", "ci:test", "cpu:main", "cpu:test"):
        got = subprocess.run(["bash", "-c", func + f"readme_cmd {tag}"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.rstrip("\n")
        assert got == readme_cmd(tag), tag
