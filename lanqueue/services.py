"""The services of a running node, as the parts above it see them.

`node.Node` wires them; the routes (`api/keys.NodeServices`) and the farm view read them through
this protocol, so neither imports `node` (which imports both: an import cycle, even if only for
the type checker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .automation import Automation
    from .config import Options
    from .discovery import DiscoveryService
    from .driving import QueueDriver
    from .files import FileStore
    from .model import Job
    from .preprocess import Evaluator
    from .printer import PrinterBackend
    from .queues.registry import QueueRegistry
    from .store import Store
    from .sync.service import LanService

__all__ = ["CoreServices"]


class CoreServices(Protocol):
    """What the routes, the page and the farm view use of a running node (`node.Node`)."""

    options: Options
    node_id: str
    api_key: str
    store: Store
    files: FileStore
    printer: PrinterBackend
    runner: QueueDriver
    queues: QueueRegistry
    lan: LanService | None
    discovery: DiscoveryService | None
    evaluator: Evaluator | None
    selected_file: str | None

    async def automation(self) -> Automation: ...
    async def set_automation(self, automation: Automation) -> None: ...
    async def set_external(self, data: dict[str, Any]) -> None: ...
    async def set_queues(self, queues: list[dict[str, Any]]) -> None: ...
    async def queue_uploaded_file(self, path: str) -> int: ...
    async def select_file(self, path: str, *, print_now: bool) -> None: ...
    def printing_path(self) -> str | None: ...
    def disk_usage(self) -> tuple[int, int]: ...
    async def export_jobs(self, job_ids: list[int]) -> tuple[list[str], list[str]]: ...
    async def import_job(self, path: str, queue_name: str) -> Job: ...
