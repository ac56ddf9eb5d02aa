"""`python -m lanqueue.printer`: the virtual printer on a pty (same as `lanqueue virtual-printer`)."""

from __future__ import annotations

from .virtual import main

raise SystemExit(main())
