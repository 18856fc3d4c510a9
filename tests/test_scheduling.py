"""The suite's own scheduling under pytest-xdist (tests/conftest.py): the README's test command runs
two workers, and what must run in one process, one module after another, is named there."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import XDIST_FIRST, XDIST_SCOPES, xdist_scope

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("nodeid, scope", [
    ("tests/test_api.py::test_x", "tests/test_api.py"),
    ("tests/test_api.py::TestA::test_x[a::b]", "tests/test_api.py"),
    ("tests/test_ray.py::test_resume_after_the_driver_is_killed", "ray"),
    ("tests/test_track_ray.py::test_ray_equals_one_process_and_resumes", "ray"),
    ("tests/test_sam3_weights.py::test_cli_download_and_info", "ray"),
    ("tests/test_notebook.py::test_runs_without_errors", "docs"),
    ("test_docs_examples.py::test_docs_example_runs[README.md:23]", "docs"),  # run from tests/
])
def test_a_test_is_scheduled_with_its_module_or_its_shared_scope(nodeid, scope):
    assert xdist_scope(nodeid) == scope


def test_every_shared_scope_names_existing_modules():
    """A renamed module would silently leave its scope (and share a Ray instance's CPUs again)."""
    assert sorted(name for name in XDIST_SCOPES if not (TESTS / name).is_file()) == []
    assert set(XDIST_FIRST) <= set(XDIST_SCOPES.values())
