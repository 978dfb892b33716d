"""The test project's tasks: plain, failing, async, with context, on another queue."""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from django.tasks import TaskContext, task
except ImportError:
    from django_tasks import TaskContext, task  # type: ignore[no-redef]


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(priority=50, queue_name="emails")
def send_receipt(order: int, *, to: str) -> dict[str, Any]:
    return {"order": order, "to": to, "sent": True}


@task()
def explode(message: str) -> None:
    raise ValueError(message)


@task()
async def fetch(url: str) -> str:
    await asyncio.sleep(0)
    return f"fetched {url}"


@task(takes_context=True)
def introspect(context: TaskContext, tag: str) -> dict[str, Any]:
    result = context.task_result
    return {"tag": tag, "id": result.id, "attempt": context.attempt, "workers": result.worker_ids}
