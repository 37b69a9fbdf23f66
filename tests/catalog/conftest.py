"""Fixtures for catalog tests: a private MEDIA_ROOT, an ops manager, and import helpers."""

import io
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from openpyxl import Workbook

from catalog.models import Channel, ChannelKind, ImportJob
from catalog.services import import_job_create, import_job_run
from tests.conftest import make_user

HEADER = (
    "code,title,category,price,cost,currency,weight_grams,length_mm,width_mm,height_mm,"
    "attributes,active,channel,id_kind,external_id"
)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def ops(db) -> User:
    """An ops manager with admin access."""
    user = make_user("olivia", "ops_manager")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def amazon(db) -> Channel:
    return Channel.objects.create(kind=ChannelKind.AMAZON, code="amz-us")


def csv_bytes(*lines: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode("utf-8")


def xlsx_bytes(rows: list[list]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@pytest.fixture
def run_import(db) -> Callable[..., ImportJob]:
    """Import file content through the same service the task runs, and return the job."""

    def run(content: bytes, *, name: str = "skus.csv", user=None, default_channel=None):
        job = import_job_create(
            file=ContentFile(content, name=name),
            file_name=name,
            created_by=user,
            default_channel=default_channel,
            queue=False,
        )
        return import_job_run(job_id=job.pk)

    return run


def row_errors(job: ImportJob) -> list[tuple[int, str, str, str]]:
    return list(job.row_errors.values_list("row_number", "column", "code", "reason"))
