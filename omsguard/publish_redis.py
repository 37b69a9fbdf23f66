"""Commands on a Redis connection each thread keeps, and a shorter kombu publish built on them.

redis-py 8.2 spends about 130 Python function calls on one command through its client: taking
a connection from the pool and giving it back, encoding the command and its retry wrapper.
A connection held by the thread and a command encoded here cost about 50 (cProfile). The rate
limiter (omsguard/ratelimit.py) and `redis_publish` use them, because each acknowledged
webhook runs one rate limit script and publishes one task.
"""

import os
import threading
from typing import Any

from kombu.entity import maybe_delivery_mode
from kombu.exceptions import OperationalError
from kombu.serialization import dumps as serialize
from kombu.transport.redis import Channel as RedisChannel
from kombu.utils.json import dumps as json_dumps
from kombu.utils.uuid import uuid
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# The keys of the message omsguard.celery builds for Producer.publish. A message with any other
# key, or with other values for these, goes through kombu (see _redis_publish_supported).
PUBLISH_KEYS = frozenset(
    (
        "body",
        "exchange",
        "routing_key",
        "serializer",
        "compression",
        "retry",
        "retry_policy",
        "delivery_mode",
        "declare",
        "headers",
        "correlation_id",
        "reply_to",
    )
)


def resp_command_encode(parts: tuple[bytes, ...]) -> bytes:
    """Encode a command as a RESP array of bulk strings, byte for byte as redis-py packs it."""
    chunks = [b"*%d\r\n" % len(parts)]
    for part in parts:
        chunks.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(chunks)


class HeldRedisConnection(threading.local):
    """One connection of a redis-py pool, kept by each thread between commands.

    The connection stays out of the pool until the thread uses another pool, or a command on
    it fails. A forked child does not use its parent's connection: it takes one of its own.
    """

    def __init__(self) -> None:
        self.pool: Any = None
        self.connection: Any = None
        self.pid = 0

    def run(self, pool: Any, command: tuple[bytes, ...]) -> Any:
        """Send one command through a connection of `pool` and return the reply.

        Raises redis-py's errors: a reply that is a Redis error (NoScriptError, for example)
        keeps the connection, any other error drops it. A connection that Redis has closed
        (a restart, a client timeout) fails with ConnectionError on its first use, so the
        command is sent once more on a new socket. A timeout is not retried: a Redis that
        hangs must cost one socket_timeout, not two.
        """
        connection = self._connection(pool)
        packed = [resp_command_encode(command)]
        try:
            try:
                connection.send_packed_command(packed)
                return connection.read_response()
            except RedisConnectionError:
                connection.disconnect()
            connection.send_packed_command(packed)
            return connection.read_response()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            self.drop(disconnect=True)
            raise

    def drop(self, *, disconnect: bool) -> None:
        """Give the connection back to its pool, closed first when `disconnect` is set."""
        connection, pool = self.connection, self.pool
        self.pool = self.connection = None
        if connection is None or self.pid != os.getpid():
            # A connection inherited over a fork shares its socket with the parent.
            return
        if disconnect:
            connection.disconnect()
        pool.release(connection)

    def _connection(self, pool: Any) -> Any:
        if self.connection is not None and self.pool is pool and self.pid == os.getpid():
            return self.connection
        self.drop(disconnect=False)
        self.connection = pool.get_connection()
        self.pool, self.pid = pool, os.getpid()
        return self.connection


_broker_connection = HeldRedisConnection()


def redis_publish(producer: Any, message: dict) -> bool:
    """Publish `message` as producer.publish(**message) does on kombu's Redis transport.

    Returns False, having sent nothing, when the message or the channel needs something this
    does not reproduce. The caller then calls producer.publish. Raises kombu's
    OperationalError when Redis cannot be reached, as omsguard.celery does for kombu's own
    connection errors.

    kombu 5.7 spends about 280 Python function calls on such a publish (cProfile), most of
    them in argument handling, a new redis-py client for each message and the client's
    command path. This builds the same message with kombu's own serializer, body encoding
    and priority rules, and sends its LPUSH through a connection the thread keeps: about 120
    calls. tests/ingestion/test_ack_redis_commands.py compares the two messages.
    """
    channel = producer.channel
    if not _redis_publish_supported(producer, channel, message):
        return False

    content_type, content_encoding, body = serialize(message["body"], serializer="json")
    body, body_encoding = channel.encode_body(body, channel.body_encoding)
    queue = message["routing_key"]
    envelope = {
        "body": body,
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": message["headers"],
        # In the order kombu's Producer.publish and Channel.basic_publish set them.
        "properties": {
            "correlation_id": message["correlation_id"],
            "reply_to": message["reply_to"],
            "delivery_mode": maybe_delivery_mode(
                message["delivery_mode"] or producer.exchange.delivery_mode
            ),
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": channel.default_priority,
            "body_encoding": body_encoding,
            "delivery_tag": uuid(),
        },
    }
    key = channel._q_for_pri(queue, channel._get_message_priority(envelope, reverse=False))
    command = (b"LPUSH", key.encode(), json_dumps(envelope).encode())
    try:
        _broker_connection.run(channel.pool, command)
    except (RedisConnectionError, RedisTimeoutError, OSError) as error:
        raise OperationalError(str(error)) from error
    return True


def _redis_publish_supported(producer: Any, channel: Any, message: dict) -> bool:
    """Tell whether redis_publish reproduces what kombu would do with this message.

    It does for a JSON message to a queue by name (the default exchange) without compression,
    retries, declarations or a publish batch, on a Redis channel without a key prefix or
    queue expiry. NOTE: `_q_for_pri`, `_get_message_priority`, `_expires` and
    `_batch_local` are kombu 5.7 internals; a kombu upgrade must run the comparison tests.
    """
    return (
        message.keys() == PUBLISH_KEYS
        and type(channel) is RedisChannel
        and not channel.global_keyprefix
        and message["routing_key"] not in channel._expires
        and message["exchange"] == ""
        and producer.exchange.name == ""
        and message["serializer"] == "json"
        and not (message["compression"] or message["retry"] or message["declare"])
        and getattr(producer._batch_local, "current", None) is None
    )
