"""Celery application; configuration comes from Django settings prefixed with CELERY_.

Every task of the app is an OmsGuardTask, whose apply_async publishes the plainest calls
(positional integer arguments, no options) with a shorter path than Celery's own. The
message is the same protocol 2 message that Celery would send.
"""

import functools
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Task, signals
from celery.utils.nodenames import anon_nodename
from django.db import close_old_connections, connections
from kombu.exceptions import OperationalError

from omsguard.publish_redis import redis_publish
from omsguard.queues import route_task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omsguard.settings")

# Celery's routing setting that direct publishing reproduces (omsguard.queues.route_task).
ROUTE_TASK = "omsguard.queues.route_task"
# Empty parts of a protocol 2 message body: the task has no callbacks, chain or chord.
EMPTY_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
PUBLISH_SIGNALS = (signals.before_task_publish, signals.after_task_publish, signals.task_sent)


class OmsGuardTask(Task):
    """A Celery task whose plainest calls skip most of Celery's publishing work.

    A webhook acknowledgement publishes one task, and Celery's send_task took about 1,100 of
    its 3,800 Python function calls (cProfile, Celery 5.7): routing, option merging, config
    lookups, saferepr, a producer from the pool and the queue declaration on every publish.
    For `delay(<ints>)` this builds the same protocol 2 message itself and, on Redis, sends
    it with omsguard.publish_redis (kombu's Producer.publish for anything that needs more),
    in about 235 calls. The first publish to each queue in a
    process still goes through Celery, which declares the queue on the broker. Every other
    call goes through Celery unchanged. So does any call where the difference could be seen:
    eager mode, publish signal receivers, sent events, a result backend, task-level options,
    brokers other than Redis, and a call from inside a running task, whose message carries
    its parent's ids.

    NOTE: this code writes the message, not Celery. tests/ingestion/test_ack_publish.py
    compares it with Celery's own, field by field, so a Celery upgrade that changes the
    protocol fails that test before it reaches the workers.
    """

    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: str | None = None,
        **options: Any,
    ) -> Any:
        plain_call = not (kwargs or task_id or producer or link or link_error or shadow or options)
        target = _direct_publish_queue(self, args) if plain_call else None
        if target is not None:
            return _publish_direct(self, tuple(args), *target)
        return super().apply_async(
            args, kwargs, task_id, producer, link, link_error, shadow, **options
        )


app = Celery("omsguard", task_cls=OmsGuardTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
def database_connections_refresh(task: Task | None = None, **kwargs: Any) -> None:
    """Close connections that are too old or broken before a task, as Django does per request.

    CELERY_DB_REUSE_MAX keeps connections open between tasks; without this check a worker
    would keep using a connection the database has dropped. The health check query is left
    out for a connection that the previous task finished with less than
    HEALTH_CHECK_SKIP_SECONDS ago. An eager task runs inside its caller's transaction, so it
    must not touch the connection.
    """
    if task is not None and task.request.is_eager:
        return
    close_old_connections()
    health_check_skip_if_just_used()


# Seconds during which the next task or webhook request of a thread skips Django's health
# check query on an open connection. The window starts when the previous one ended without a
# database error on that connection. The check is one SELECT 1 round trip. It took about 6 %
# of a pool process's time while it drained 800 orders back to back (py-spy --idle). A
# webhook acknowledgement otherwise makes two PostgreSQL round trips: this one and its INSERT.
# A connection that breaks within this window fails the next task's or request's first query
# instead, and Django closes it after that task or request (errors_occurred), as it would
# without the health check. process_delivery retries such a failure, but a task without
# retries fails once. A webhook request gets a 503 with Retry-After
# (omsguard.middleware.DatabaseUnavailableMiddleware), and the channel sends the delivery again.
HEALTH_CHECK_SKIP_SECONDS = 1.0

# Per thread: database alias -> time.monotonic() when a task or request last finished with it.
_connection_use = threading.local()


@signals.task_postrun.connect
def database_connections_note_use(task: Task | None = None, **kwargs: Any) -> None:
    """Record which connections a finished task leaves open without a database error."""
    if task is not None and task.request.is_eager:
        return
    connections_note_healthy_use()


def connections_note_healthy_use() -> None:
    """Record, for this thread, the open connections that have had no database error."""
    now = time.monotonic()
    _connection_use.finished = {
        conn.alias: now
        for conn in connections.all(initialized_only=True)
        if conn.connection is not None and not conn.errors_occurred
    }


def health_check_skip_if_just_used() -> None:
    """Mark as checked each open connection noted less than HEALTH_CHECK_SKIP_SECONDS ago.

    Call it after close_old_connections (Django's request_started receiver, or
    database_connections_refresh), which closes a connection that is too old or had errors.
    Each note is used once.
    """
    finished = getattr(_connection_use, "finished", {})
    _connection_use.finished = {}
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        used_at = finished.get(conn.alias)
        recent = used_at is not None and now - used_at < HEALTH_CHECK_SKIP_SECONDS
        # close_old_connections has already applied CONN_MAX_AGE and closed a connection
        # with errors, so only an open connection that was used last is left as it is.
        if recent and conn.connection is not None and not conn.errors_occurred:
            conn.health_check_done = True


@dataclass(frozen=True)
class PublishSettings:
    """The Celery settings a direct publish uses, read once per process."""

    allowed: bool
    serializer: str
    compression: str | None
    retry: bool
    retry_policy: dict
    delivery_mode: Any
    pool_acquire_timeout: float | None


@functools.cache
def _publish_settings(celery_app: Celery) -> PublishSettings:
    # Each app.conf lookup costs about 25 Python calls, so settings that only Django's
    # settings module sets are read once. NOTE: changing one of them on app.conf at run time
    # is not seen by a process that has already published. Tests change task_always_eager,
    # task_default_queue and the producer pool (with broker_url); those are read at every
    # publish.
    conf = celery_app.conf
    return PublishSettings(
        allowed=not (
            conf.task_send_sent_event
            or conf.result_backend
            or tuple(conf.task_routes or ()) != (ROUTE_TASK,)
        ),
        serializer=conf.task_serializer,
        compression=conf.task_compression,
        retry=conf.task_publish_retry,
        retry_policy=conf.task_publish_retry_policy,
        delivery_mode=conf.task_default_delivery_mode,
        pool_acquire_timeout=conf.broker_pool_acquire_timeout,
    )


@functools.cache
def _task_publishes_plainly(task: Task) -> bool:
    """Tell whether the task sets nothing that Celery would add to its messages."""
    options = dict(task._get_exec_options())
    serializer = options.pop("serializer", None)
    return not (
        task.ignore_result
        or task.time_limit is not None
        or task.soft_time_limit is not None
        or serializer not in (None, _publish_settings(task._get_app()).serializer)
        or any(value is not None for value in options.values())
        or type(task).shadow_name is not Task.shadow_name
    )


@dataclass
class ProducerSlot:
    """The broker state this process keeps for direct publishing, per producer pool.

    `producer` is one producer of Celery's pool, held from its first direct publish on, so a
    publish does not acquire and revive a producer (about 130 Python function calls in kombu
    5.7). It takes one of the pool's broker_pool_limit places. A thread that finds `lock`
    taken uses a producer of the pool as Celery does. `declared` contains the queues this
    process has published to through Celery's own path, which declares a queue on the broker.
    """

    pool: Any
    pid: int
    redis: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    producer: Any = None
    declared: set[str] = field(default_factory=set)

    def release(self) -> None:
        """Hand the held producer back to its pool, unless a publish is using it."""
        if self.lock.acquire(blocking=False):
            try:
                if self.producer is not None:
                    self.producer.release()
                    self.producer = None
            finally:
                self.lock.release()


_slot: ProducerSlot | None = None


def _producer_slot(celery_app: Celery) -> ProducerSlot:
    """Return the slot of the app's current producer pool, in this process.

    A new pool (the broker URL changed) or a new process (a fork) gets a new slot, because a
    producer's connection must not be shared with another pool or process.
    """
    global _slot

    pool = celery_app.producer_pool
    slot = _slot
    if slot is None or slot.pool is not pool or slot.pid != os.getpid():
        if slot is not None and slot.pid == os.getpid():
            slot.release()
        driver = pool.connections.connection.transport.driver_type
        slot = _slot = ProducerSlot(pool=pool, pid=os.getpid(), redis=driver == "redis")
    return slot


def _direct_publish_queue(task: Task, args: Any) -> tuple[str, ProducerSlot] | None:
    """Return the queue and slot to publish task(*args) with directly, or None for Celery."""
    if not isinstance(args, (tuple, list)) or any(type(arg) is not int for arg in args):
        return None
    celery_app = task._get_app()
    if not (_publish_settings(celery_app).allowed and _task_publishes_plainly(task)):
        return None
    if (
        celery_app.conf.task_always_eager
        or celery_app.current_worker_task is not None
        or any(signal.receivers for signal in PUBLISH_SIGNALS)
    ):
        return None
    slot = _producer_slot(celery_app)
    if not slot.redis:
        return None

    route = route_task(task.name, args, {}, {}, task=task)
    if route is None:
        return None
    if route["queue"] not in slot.declared:
        slot.declared.add(route["queue"])
        return None
    return route["queue"], slot


def _task_id() -> str:
    """Return a random version 4 UUID as a string, as Celery's uuid() does, in 3 calls, not 9.

    The 122 random bits come from os.urandom, as in uuid.uuid4(); the version nibble is set
    to 4 and the two variant bits to RFC 4122's 10, as uuid.UUID(version=4) sets them.
    """
    digits = os.urandom(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


# (process id, Celery's anon_nodename() in that process). The name is "gen<pid>@<host>", and
# Celery memoizes the host name for the life of the process, so only a fork changes it.
_origin: tuple[int, str] | None = None


def _origin_nodename() -> str:
    global _origin

    pid = os.getpid()
    if _origin is None or _origin[0] != pid:
        _origin = (pid, anon_nodename())
    return _origin[1]


def _publish_direct(task: Task, args: tuple, queue_name: str, slot: ProducerSlot) -> Any:
    """Publish the protocol 2 message of task(*args) to the queue, as Celery's send_task does.

    Raises kombu's OperationalError when the broker cannot be reached, as Celery does.
    """
    celery_app = task._get_app()
    publish = _publish_settings(celery_app)
    task_id = _task_id()
    headers = {
        "lang": "py",
        "task": task.name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        # repr of a tuple of ints is what Celery's saferepr returns for it.
        "argsrepr": repr(args),
        "kwargsrepr": "{}",
        "origin": _origin_nodename(),
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    message = {
        "body": (args, {}, EMPTY_EMBED),
        # The default exchange routes by queue name: Celery's choice for a direct queue.
        "exchange": "",
        "routing_key": queue_name,
        "serializer": publish.serializer,
        "compression": publish.compression,
        "retry": publish.retry,
        "retry_policy": publish.retry_policy,
        "delivery_mode": publish.delivery_mode,
        "declare": [],
        "headers": headers,
        "correlation_id": task_id,
        "reply_to": celery_app.thread_oid,
    }

    if slot.lock.acquire(blocking=False):
        try:
            if slot.producer is None:
                slot.producer = slot.pool.acquire(block=True, timeout=publish.pool_acquire_timeout)
            _producer_publish(slot.producer, message)
        except BaseException:
            # The connection may be broken: the pool gets the producer back, as after
            # Celery's own failed publish, and the next publish acquires one again.
            producer, slot.producer = slot.producer, None
            if producer is not None:
                producer.release()
            raise
        finally:
            slot.lock.release()
    else:
        producer = slot.pool.acquire(block=True, timeout=publish.pool_acquire_timeout)
        try:
            _producer_publish(producer, message)
        finally:
            producer.release()
    return task.AsyncResult(task_id)


def _producer_publish(producer: Any, message: dict) -> None:
    # On Redis, a message kombu would send unchanged goes out through a held connection
    # (omsguard/publish_redis.py) for about half the Python work. Anything else goes to kombu.
    if redis_publish(producer, message):
        return
    connection = producer.connection
    try:
        producer.publish(**message)
    except connection.connection_errors + connection.channel_errors as error:
        # Celery raises kombu's OperationalError for a broker it cannot reach, so do the same.
        raise OperationalError(str(error)) from error
