"""The bare-view baselines of the benches, routed only when OMSGUARD_BENCH_ENDPOINTS is on."""

import json

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

# Created and dropped by bench/ingest.py; the app has no model or migration for it.
BENCH_BODY_TABLE = "bench_ingest_body"


@csrf_exempt
@require_POST
def bench_store_body(request: HttpRequest) -> JsonResponse:
    """Insert the raw request body into the bench table, with no checks, and return 200."""
    with connection.cursor() as cursor:
        # The table name is a module constant; the body goes in as a parameter.
        statement = f"INSERT INTO {BENCH_BODY_TABLE} (body) VALUES (%s) RETURNING id"  # noqa: S608
        cursor.execute(statement, [request.body])
        (row_id,) = cursor.fetchone()
    return JsonResponse({"status": "stored", "id": row_id})


# Created and dropped by bench/decisions.py, like BENCH_BODY_TABLE.
BENCH_ROW_TABLE = "bench_decisions_row"


@api_view(["POST"])
@permission_classes([IsAuthenticated])
def bench_insert_row(request: Request) -> Response:
    """Parse the JSON body through DRF and insert it as one row: the decisions API's baseline."""
    with connection.cursor() as cursor:
        # The table name is a module constant; the values go in as parameters.
        statement = f"INSERT INTO {BENCH_ROW_TABLE} (user_id, body) VALUES (%s, %s) RETURNING id"  # noqa: S608
        cursor.execute(statement, [request.user.pk, json.dumps(request.data)])
        (row_id,) = cursor.fetchone()
    return Response({"status": "stored", "id": row_id}, status=201)
