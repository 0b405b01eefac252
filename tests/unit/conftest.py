"""The fast tests' own fixtures."""

from __future__ import annotations

import shutil
import tempfile

import pytest


@pytest.fixture(autouse=True)
def _short_runtime_dir(monkeypatch):
    """A short ``XDG_RUNTIME_DIR`` of the test's own: under pytest-xdist a ``tmp_path`` state directory is too
    long for a socket path, and the socket directory would fall back to the user's shared ``/tmp`` one,
    where the tests would leave their locks and marks."""
    path = tempfile.mkdtemp(prefix="flu-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", path)
    yield
    shutil.rmtree(path, ignore_errors=True)
