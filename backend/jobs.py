"""Compatibility for one release: rq jobs enqueued before the packages name their functions backend.jobs.*.

Remove in 0.3; everything new is enqueued as backend.pipeline.jobs.* (tools/import_graph.py COMPAT_ALIASES).
"""

from backend.pipeline.jobs import (
    flush_outbox,
    label_failed,
    label_tasks,
    rebuild_quality,
    refresh_quality,
    refresh_task,
    review_annotations,
    sync_project,
)

__all__ = [
    "flush_outbox",
    "label_failed",
    "label_tasks",
    "rebuild_quality",
    "refresh_quality",
    "refresh_task",
    "review_annotations",
    "sync_project",
]
