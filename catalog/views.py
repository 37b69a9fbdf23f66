"""SKU import pages: the job page with its live progress fragment, the error CSV and the job
list. The upload form itself lives in the admin (catalog.admin.SkuAdmin.import_view)."""

import csv
from collections.abc import Callable, Iterator
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django_htmx.http import HttpResponseClientRedirect

from . import selectors
from .models import ImportJob, ImportPhase, ImportStatus

IMPORT_PERMISSION = "catalog.add_sku"
ERRORS_SHOWN = 100


def import_permission_required(view: Callable) -> Callable:
    """Log in first (htmx requests get HX-Redirect), then require catalog.add_sku or a 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            if request.htmx:
                login_url = redirect_to_login(request.htmx.current_url or request.path).url
                return HttpResponseClientRedirect(login_url)
            return login_required(view)(request, *args, **kwargs)
        if not request.user.has_perm(IMPORT_PERMISSION):
            if request.htmx:
                return render(
                    request,
                    "catalog/_flash.html",
                    {"message": "You may not view SKU imports.", "code": "forbidden"},
                    status=403,
                )
            return render(request, "catalog/forbidden.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


@import_permission_required
def import_job_page(request: HttpRequest, job_id) -> HttpResponse:
    job = _job_or_404(job_id)
    return render(
        request,
        "catalog/import_job.html",
        {
            **_progress_context(job),
            "earlier": selectors.import_job_earlier_with_same_file(job=job),
        },
    )


@import_permission_required
def import_job_progress(request: HttpRequest, job_id) -> HttpResponse:
    """Render the progress fragment, which polls itself until the job finishes."""
    job = _job_or_404(job_id)
    return render(request, "catalog/_import_progress.html", _progress_context(job))


@import_permission_required
def import_job_errors_csv(request: HttpRequest, job_id) -> StreamingHttpResponse:
    job = _job_or_404(job_id)
    response = StreamingHttpResponse(_error_csv_lines(job), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
    return response


@import_permission_required
def import_job_list(request: HttpRequest) -> HttpResponse:
    return render(request, "catalog/import_list.html", {"jobs": selectors.import_job_list()})


def _job_or_404(job_id) -> ImportJob:
    job = selectors.import_job_get(job_id=job_id)
    if job is None:
        raise Http404("No such import job.")
    return job


def _progress_context(job: ImportJob) -> dict:
    applied = selectors.import_job_applied_rows(job=job)
    return {
        "job": job,
        "apply_started": job.phase == ImportPhase.APPLYING or job.status == ImportStatus.SUCCEEDED,
        "validated_percent": _percent(job.validated_rows, job.total_rows),
        "applied_rows": applied,
        "applied_percent": _percent(applied, job.rows_to_apply),
        "errors": selectors.import_row_errors(job=job, limit=ERRORS_SHOWN)
        if job.is_finished
        else [],
        "errors_shown": ERRORS_SHOWN,
    }


def _percent(done: int, total: int) -> int:
    return 100 if total == 0 else min(100, round(100 * done / total))


class _Echo:
    def write(self, value: str) -> str:
        return value


def _error_csv_lines(job: ImportJob) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(selectors.IMPORT_ERROR_CSV_HEADER)
    for cells in selectors.import_row_errors_csv_rows(job=job):
        yield writer.writerow(cells)
