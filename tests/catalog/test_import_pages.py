"""The import pages: admin upload, the job page, its polling fragment and the error CSV."""

import csv
import io

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.models import ImportJob, ImportStatus, Sku
from catalog.services import import_job_create
from tests.catalog.conftest import csv_bytes
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

ROWS = [
    "TEE,Tee,Tops,10,,USD,,,,,,,shop,sku,TEE",
    "BAD,Bad Tee,Tops,=HYPERLINK(1),,USD,,,,,,,,,",
    "MUG,Mug,,x,,USD,,,,,,,,,",
]


def upload(client, content: bytes, name: str = "skus.csv", **data):
    return client.post(
        reverse("admin:catalog_sku_import"),
        {"file": SimpleUploadedFile(name, content, content_type="text/csv"), **data},
    )


def test_sku_changelist_links_to_import_for_ops(client, ops):
    client.force_login(ops)

    response = client.get(reverse("admin:catalog_sku_changelist"))

    assert response.status_code == 200
    assert reverse("admin:catalog_sku_import").encode() in response.content


def test_sku_changelist_hides_import_without_permission(client, db):
    viewer = make_user("vera", "cs_manager")
    viewer.is_staff = True
    viewer.save()
    client.force_login(viewer)

    response = client.get(reverse("admin:catalog_sku_changelist"))

    assert response.status_code == 200
    assert reverse("admin:catalog_sku_import").encode() not in response.content


def test_upload_redirects_to_job_page_and_runs(
    client, ops, channel, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    form = client.get(reverse("admin:catalog_sku_import"))
    assert form.status_code == 200
    assert b'enctype="multipart/form-data"' in form.content

    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, csv_bytes(*ROWS), channel=channel.pk)

    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/catalog/imports/{job.pk}/"
    assert job.created_by == ops
    assert job.default_channel == channel
    assert job.status == ImportStatus.SUCCEEDED
    assert job.error_count == 2
    assert Sku.objects.get().code == "TEE"


def test_upload_rejects_other_file_types(client, ops):
    client.force_login(ops)

    response = upload(client, b"%PDF-1.4", name="skus.pdf")

    assert response.status_code == 200
    assert b"Upload a .csv or .xlsx file; skus.pdf is neither." in response.content
    assert not ImportJob.objects.exists()


def test_upload_rejects_files_over_the_limit(client, ops, settings):
    settings.OMSGUARD_IMPORT_MAX_BYTES = 10
    client.force_login(ops)

    response = upload(client, csv_bytes(*ROWS))

    assert response.status_code == 200
    assert b"the limit is 10\xc2\xa0bytes" in response.content
    assert not ImportJob.objects.exists()


def test_upload_page_is_forbidden_without_add_sku(client, db):
    viewer = make_user("vera", "cs_manager")
    viewer.is_staff = True
    viewer.save()
    client.force_login(viewer)

    assert client.get(reverse("admin:catalog_sku_import")).status_code == 403
    assert upload(client, csv_bytes(*ROWS)).status_code == 403
    assert not ImportJob.objects.exists()


def test_upload_page_sends_non_staff_to_admin_login(client, agent):
    client.force_login(agent)

    response = client.get(reverse("admin:catalog_sku_import"))

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.fixture
def finished_job(channel, ops, run_import) -> ImportJob:
    return run_import(csv_bytes(*ROWS), user=ops)


@pytest.fixture
def queued_job(channel, ops) -> ImportJob:
    return import_job_create(
        file=ContentFile(csv_bytes(*ROWS)), file_name="skus.csv", created_by=ops, queue=False
    )


def test_job_page_shows_summary_and_errors(client, ops, finished_job):
    client.force_login(ops)

    response = client.get(reverse("catalog:import_job", args=[finished_job.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "SKU import: skus.csv" in page
    assert finished_job.file_sha256 in page
    assert '<td data-count="created">1</td>' in page
    assert '<td data-count="errors">2</td>' in page
    assert 'data-code="invalid_number"' in page
    assert reverse("catalog:import_errors", args=[finished_job.pk]) in page
    assert "hx-trigger" not in page


def test_job_page_notes_an_earlier_import_of_the_same_file(client, ops, channel, run_import):
    earlier = run_import(csv_bytes(*ROWS), user=ops)
    later = run_import(csv_bytes(*ROWS), user=ops)
    client.force_login(ops)

    page = client.get(reverse("catalog:import_job", args=[later.pk])).content.decode()

    assert "The same file was imported before" in page
    assert reverse("catalog:import_job", args=[earlier.pk]) in page


def test_progress_fragment_polls_while_the_job_runs(client, ops, queued_job):
    client.force_login(ops)
    url = reverse("catalog:import_progress", args=[queued_job.pk])

    response = client.get(url, headers={"HX-Request": "true"})

    assert response.status_code == 200
    fragment = response.content.decode()
    assert f'hx-get="{url}"' in fragment
    assert 'hx-trigger="every 1s"' in fragment
    assert 'hx-swap="outerHTML"' in fragment
    assert "Waiting for a worker" in fragment


def test_progress_fragment_stops_polling_when_finished(client, ops, finished_job):
    client.force_login(ops)

    response = client.get(
        reverse("catalog:import_progress", args=[finished_job.pk]), headers={"HX-Request": "true"}
    )

    fragment = response.content.decode()
    assert response.status_code == 200
    assert 'id="import-progress"' in fragment
    assert "hx-trigger" not in fragment
    assert 'data-status="succeeded"' in fragment
    assert "Validating: 3 of 3 rows" in fragment
    assert "Applying: 2 of 2 writes" in fragment


def test_progress_fragment_of_a_failed_job_shows_the_reason(client, ops, channel, run_import):
    job = run_import(b"code,colour\nTEE,Red\n", user=ops)
    client.force_login(ops)

    fragment = client.get(reverse("catalog:import_progress", args=[job.pk])).content.decode()

    assert "hx-trigger" not in fragment
    assert 'data-status="failed"' in fragment
    assert "Unknown column &#x27;colour&#x27; in the header." in fragment
    assert "nothing applied" in fragment


def test_error_csv_lists_every_error_with_formulas_defused(client, ops, finished_job):
    client.force_login(ops)

    response = client.get(reverse("catalog:import_errors", args=[finished_job.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="import-{finished_job.pk}-errors.csv"'
    )
    body = b"".join(response.streaming_content).decode()
    assert list(csv.reader(io.StringIO(body))) == [
        ["row", "column", "value", "reason"],
        ["3", "price", "'=HYPERLINK(1)", "not a number; write it like 19.99"],
        ["4", "price", "x", "not a number; write it like 19.99"],
    ]


def test_job_list_links_each_job(client, ops, finished_job):
    client.force_login(ops)

    response = client.get(reverse("catalog:import_list"))

    assert response.status_code == 200
    assert reverse("catalog:import_job", args=[finished_job.pk]).encode() in response.content


@pytest.mark.parametrize("name", ["import_job", "import_progress", "import_errors"])
def test_cs_agent_gets_403(client, agent, finished_job, name):
    client.force_login(agent)

    response = client.get(reverse(f"catalog:{name}", args=[finished_job.pk]))

    assert response.status_code == 403


def test_cs_agent_gets_403_on_job_list(client, agent):
    client.force_login(agent)

    assert client.get(reverse("catalog:import_list")).status_code == 403


def test_anonymous_user_is_sent_to_login(client, finished_job):
    url = reverse("catalog:import_job", args=[finished_job.pk])

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_anonymous_htmx_poll_gets_hx_redirect(client, finished_job):
    url = reverse("catalog:import_progress", args=[finished_job.pk])

    response = client.get(url, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/accounts/login/?next={url}"


def test_unknown_job_is_404(client, ops):
    client.force_login(ops)

    response = client.get("/catalog/imports/00000000-0000-0000-0000-000000000000/")

    assert response.status_code == 404
