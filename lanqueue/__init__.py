"""lanqueue: keep every printer of a farm busy from one shared queue, without a central server."""

__version__ = "0.1.0"
