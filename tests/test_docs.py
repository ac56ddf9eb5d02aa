"""The generated API reference matches the OpenAPI document the node serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_api_reference_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "make_api_md.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
