"""`python -m lanqueue.printer`: the virtual printer on a pty (same as `lanqueue virtual-printer`)."""

from __future__ import annotations

from .virtual_cli import main

raise SystemExit(main())
