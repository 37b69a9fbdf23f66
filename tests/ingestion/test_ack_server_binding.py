"""The delivery INSERT of a cached webhook channel binds its values on the server.

Django's psycopg 3 cursor merges every value into the SQL text, so a 14 kB body travels as a
28 kB hex literal that PostgreSQL parses again. orders.webhook_channels sends the INSERT
through a cursor that passes the values as parameters instead. These tests check that the
INSERT goes that way and that the stored row is byte for byte what was received.
"""

import psycopg
import pytest
from django.db import connection
from django.urls import reverse

from orders.models import Delivery
from tests.conftest import signed_headers

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the channel cache needs PostgreSQL"
    ),
]

# Not valid UTF-8 and with NUL bytes: the acknowledgement stores the body without parsing it,
# and bytea must keep every byte.
ODD_BODY = b'{"id": 1, "note": "\x00\xff\xfe\\u0000 \xc3\xbc"}'


def _post(client, body: bytes, webhook_id: str):
    return client.post(
        reverse("webhooks:shopify", kwargs={"channel_code": "shop"}),
        data=body,
        content_type="application/json",
        headers=signed_headers(body, webhook_id=webhook_id),
    )


def test_cached_insert_binds_values_on_server(channel, client):
    _post(client, b'{"id": 0}', "wh-warm")
    cursors = []

    def record(execute, sql, params, many, context):
        cursors.append(context["cursor"].cursor)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        response = _post(client, ODD_BODY, "wh-odd")

    assert response.status_code == 200
    assert len(cursors) == 1
    assert isinstance(cursors[0], psycopg.Cursor)
    assert not isinstance(cursors[0], psycopg.ClientCursor)
    stored = Delivery.objects.get(delivery_id="wh-odd")
    assert bytes(stored.body) == ODD_BODY
    assert stored.headers["X-Shopify-Webhook-Id"] == "wh-odd"
    assert stored.triggered_at is not None
