"""Reading a project's demonstrations from Label Studio: the full read and the re-read of one task."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import redis

from backend.labeling.errors import LabelingError
from backend.labeling.examples import example_from_task, newest_annotation
from backend.pipeline.projects import apply_version_policy, demonstration_from_example
from backend.state import store
from backend.studio.client import Studio, StudioError

if TYPE_CHECKING:
    from backend.labeling.spec import LabelingSpec
    from backend.settings import Settings

log = logging.getLogger(__name__)


def read_project(
    connection: redis.Redis,
    settings: Settings,
    spec: LabelingSpec,
    studio: Studio,
    project_id: int,
    training: bool = False,
) -> dict:
    """Replace the live demonstrations with every annotated task's newest live annotation; apply the policy."""
    demos, skipped = {}, 0
    for task in studio.annotated_tasks(project_id):
        try:
            example = example_from_task(task, spec)
        except LabelingError:
            skipped += 1
            continue
        demos[int(task["id"])] = demonstration_from_example(example, newest_annotation(task) or {})
    store.replace_live_demonstrations(connection, project_id, demos)
    moved = apply_version_policy(connection, settings, project_id, training=training)
    log.info(
        "project %s: %d demonstrations read from Label Studio (%d annotated tasks skipped)%s",
        project_id,
        len(demos),
        skipped,
        "; model_version moved" if moved else "",
    )
    return {"demonstrations": len(demos), "skipped": skipped, "version_moved": moved}


def read_task(
    connection: redis.Redis, settings: Settings, spec: LabelingSpec, studio: Studio, project_id: int, task_id: int
) -> bool:
    """Re-read one task (after one of its annotations went away); True if it is still an example."""
    try:
        task = studio.task(task_id)
    except StudioError as exc:
        if exc.status != 404:
            raise
        task = None
    try:
        example = example_from_task(task, spec) if task else None
    except LabelingError:
        example = None
    if example is None or task is None:
        store.remove_live_demonstrations(connection, project_id, [task_id])
    else:
        store.put_live_demonstration(
            connection, project_id, task_id, demonstration_from_example(example, newest_annotation(task) or {})
        )
    apply_version_policy(connection, settings, project_id)
    return example is not None
