"""The bare-view baseline of bench/ingest.py, routed only when OMSGUARD_BENCH_ENDPOINTS is on."""

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

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
