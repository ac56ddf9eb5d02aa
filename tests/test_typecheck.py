"""The package type-checks with mypy (the style guide asks for it; this keeps it true)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_mypy_clean(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the [test] extras")
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "lanqueue", "--ignore-missing-imports", "--cache-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:]


def test_ruff_clean():
    """The rules chosen in pyproject.toml ([tool.ruff]) hold over the package."""
    pytest.importorskip("ruff", reason="ruff is in the [test] extras")
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "lanqueue"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:]
