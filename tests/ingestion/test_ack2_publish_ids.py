"""The task id and origin that the direct publish (omsguard/celery.py) writes into a message.

Both must be what Celery's send_task would write: a random version 4 UUID, and the
"gen<pid>@<host>" name of the publishing process.
"""

import os
import uuid

from celery.utils.nodenames import anon_nodename

from omsguard import celery as omsguard_celery


def test_task_id_is_random_uuid4_string():
    ids = [omsguard_celery._task_id() for _ in range(2000)]

    for task_id in ids:
        parsed = uuid.UUID(task_id)
        assert str(parsed) == task_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert len(set(ids)) == len(ids)
    # Every variant digit turns up, so its two low bits stay random, as in uuid.uuid4().
    assert {task_id[19] for task_id in ids} == set("89ab")


def test_task_id_keeps_random_bits(monkeypatch):
    # The same 16 random bytes give what uuid.uuid4() gives for them.
    random_bytes = bytes(range(0xF0, 0x100))
    monkeypatch.setattr(os, "urandom", lambda size: random_bytes[:size])

    assert omsguard_celery._task_id() == str(uuid.UUID(bytes=random_bytes, version=4))


def test_origin_is_celery_nodename_of_this_process(monkeypatch):
    monkeypatch.setattr(omsguard_celery, "_origin", None)

    assert omsguard_celery._origin_nodename() == anon_nodename()
    assert omsguard_celery._origin_nodename() == anon_nodename()


def test_origin_follows_fork(monkeypatch):
    monkeypatch.setattr(omsguard_celery, "_origin", None)
    parent = omsguard_celery._origin_nodename()
    child_pid = os.getpid() + 1
    monkeypatch.setattr(os, "getpid", lambda: child_pid)

    child = omsguard_celery._origin_nodename()

    assert parent != child
    assert child == anon_nodename()
    assert child.startswith(f"gen{child_pid}@")
