"""Queues of jobs behind one interface (`base.Queue`): the local queue over the SQLite store,
LAN queues over the LAN service, and the registry a node resolves queue names with."""

from __future__ import annotations

from .base import (
    ChangedJobs,
    JobChanges,
    JobLookup,
    Pick,
    PortableJob,
    PortableSet,
    Queue,
    QueueInfo,
    QueueProvider,
    is_no_id,
    move_between,
    one_job,
)

__all__ = ["ChangedJobs", "JobChanges", "JobLookup", "Pick", "PortableJob", "PortableSet", "Queue", "QueueInfo", "QueueProvider", "is_no_id", "move_between",
           "one_job"]
