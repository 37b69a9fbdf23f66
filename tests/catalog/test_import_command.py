"""The import_skus command: summary output, errors and exit status."""

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalog.models import ImportJob, ImportStatus, Sku
from tests.catalog.conftest import csv_bytes

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    out = StringIO()
    call_command("import_skus", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def write(tmp_path: Path, content: bytes, name: str = "skus.csv") -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def test_command_imports_and_prints_a_summary(tmp_path, channel, ops):
    path = write(tmp_path, csv_bytes("TEE,Tee,Tops,10,,USD,,,,,,,,sku,TEE"))

    output = run(path, "--channel", "shop", "--user", "olivia")

    job = ImportJob.objects.get()
    assert output.splitlines() == [
        f"Import job {job.pk}: succeeded",
        f"  file       skus.csv (sha256 {job.file_sha256})",
        "  rows       1",
        "  created    1",
        "  updated    0",
        "  unchanged  0",
        "  mappings   1 created",
        "  held lines 0 settled by new mappings",
        "  errors     0 rejected rows",
        f"  time       validation {job.validation_seconds:.1f} s, apply {job.apply_seconds:.1f} s",
    ]
    assert job.created_by == ops
    assert job.default_channel == channel
    assert Sku.objects.get().code == "TEE"


def test_command_reports_row_errors_with_returncode_3(tmp_path, channel):
    path = write(tmp_path, csv_bytes("TEE,Tee,Tops,10,,USD,,,,,,,,,", "MUG,Mug,,x,,USD,,,,,,,,,"))
    errors_csv = tmp_path / "errors.csv"
    out = StringIO()

    with pytest.raises(CommandError) as raised:
        call_command("import_skus", path, "--errors-csv", str(errors_csv), stdout=out)

    assert raised.value.returncode == 3
    assert str(raised.value) == "Rows rejected: 1; the other rows were applied."
    output = out.getvalue()
    assert "row 3, price: not a number; write it like 19.99 (value 'x')" in output
    assert f"All row errors written to {errors_csv}." in output
    assert errors_csv.read_text().splitlines() == [
        "row,column,value,reason",
        "3,price,x,not a number; write it like 19.99",
    ]
    assert Sku.objects.get().code == "TEE"


def test_command_failed_job_exits_1(tmp_path, channel):
    path = write(tmp_path, b"code,colour\nTEE,Red\n")
    out = StringIO()

    with pytest.raises(CommandError) as raised:
        call_command("import_skus", path, stdout=out)

    assert raised.value.returncode == 1
    assert str(raised.value).startswith(
        "Import failed, nothing was applied: Unknown column 'colour' in the header."
    )
    assert "failed" in out.getvalue().splitlines()[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Give either a FILE to import or --job ID, not both or neither."),
        (["FILE", "--job", "1"], "Give either a FILE to import or --job ID, not both or neither."),
        (["missing.csv"], "File missing.csv does not exist."),
        (["FILE", "--channel", "nowhere"], "Channel 'nowhere' does not exist."),
        (["FILE", "--user", "ghost"], "User 'ghost' does not exist."),
        (
            ["--job", "00000000-0000-0000-0000-000000000000"],
            "Import job 00000000-0000-0000-0000-000000000000 does not exist or is not queued.",
        ),
    ],
)
def test_command_rejects_bad_arguments(tmp_path, channel, args, message):
    path = write(tmp_path, csv_bytes("TEE,Tee,,1,,USD,,,,,,,,,"))

    with pytest.raises(CommandError) as raised:
        run(*[path if arg == "FILE" else arg for arg in args])

    assert str(raised.value) == message
    assert not Sku.objects.exists()


def test_command_rejects_other_file_types(tmp_path, channel):
    path = write(tmp_path, b"code,title\n", name="skus.txt")

    with pytest.raises(CommandError, match=r"skus.txt is not a .csv or .xlsx file."):
        run(path)


def test_command_runs_a_queued_job(tmp_path, channel, ops):
    from django.core.files.base import ContentFile

    from catalog.services import import_job_create

    job = import_job_create(
        file=ContentFile(csv_bytes("TEE,Tee,,1,,USD,,,,,,,,,")),
        file_name="late.csv",
        created_by=ops,
        queue=False,
    )

    output = run("--job", str(job.pk))

    assert output.splitlines()[0] == f"Import job {job.pk}: succeeded"
    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED


def test_command_exit_status_in_a_real_process(tmp_path):
    """The shell gets 0, 3 and 1. The database is a throwaway SQLite file."""
    good = write(tmp_path, csv_bytes("TEE,Tee,,1,,USD,,,,,,,,,"), name="good.csv")
    partial = write(tmp_path, csv_bytes("MUG,Mug,,x,,USD,,,,,,,,,"), name="partial.csv")
    broken = write(tmp_path, b"code,colour\nTEE,Red\n", name="broken.csv")
    environment = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "1",
        "OMSGUARD_VAR_DIR": str(tmp_path / "var"),
        "MEDIA_ROOT": str(tmp_path / "media"),
    }
    manage = [sys.executable, str(REPO_ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=environment, check=True, cwd=REPO_ROOT)

    # The three imports run at the same time, because each process spends most of its time
    # starting Django; SQLite's busy timeout (omsguard/settings.py) serialises their writes.
    processes = [
        subprocess.Popen(
            [*manage, "import_skus", path],
            env=environment,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in (good, partial, broken)
    ]
    try:
        outputs = [process.communicate(timeout=120)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    codes = [process.returncode for process in processes]

    assert codes == [0, 3, 1], "\n".join(outputs)
