"""The four Celery queues and which tasks go to each, so each kind of work scales on its own.

A queue's name is the namespace (OMSGUARD_CELERY_QUEUE, "omsguard" unless set) and the kind:
"omsguard.ingest", "omsguard.decisions", "omsguard.reviews" and "omsguard.monitoring". A worker
started without -Q consumes all four (settings declare them as CELERY_TASK_QUEUES); a deployment
runs a pool per queue instead (docs/deploy.md).

The router reads the namespace from the Celery app at each send, not once at import, so a test
can move one process's tasks to queues of its own by changing `task_default_queue`.
"""

from typing import Any

INGEST = "ingest"
DECISIONS = "decisions"
REVIEWS = "reviews"
MONITORING = "monitoring"
QUEUE_KINDS = (INGEST, DECISIONS, REVIEWS, MONITORING)

# The first part of a task's dotted name (its Django app) picks the queue. Order webhooks,
# stock events and SKU imports are all "ingest": data arriving from outside.
KIND_BY_APP = {
    "orders": INGEST,
    "inventory": INGEST,
    "catalog": INGEST,
    "guardrails": DECISIONS,
    "reviews": REVIEWS,
    "monitoring": MONITORING,
}


def queue_name(namespace: str, kind: str) -> str:
    """Return the broker name of one queue, such as "omsguard.ingest"."""
    return f"{namespace}.{kind}"


def queue_names(namespace: str) -> list[str]:
    """Return the names of all four queues of a namespace, in QUEUE_KINDS order."""
    return [queue_name(namespace, kind) for kind in QUEUE_KINDS]


def kind_for_task(task_name: str) -> str | None:
    """Return the queue kind of a task by its app, or None for a task of no OMS Guard app."""
    return KIND_BY_APP.get(task_name.split(".", 1)[0])


def route_task(name: str, args: Any, kwargs: Any, options: dict, task: Any = None, **extra: Any):
    """Celery router: send each OMS Guard task to the queue of its kind in the current namespace.

    Celery's own tasks (none are used today) fall through to the default queue.
    """
    kind = kind_for_task(name)
    if kind is None:
        return None

    from omsguard.celery import app

    return {"queue": queue_name(app.conf.task_default_queue, kind)}
