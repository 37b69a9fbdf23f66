"""Shared code of the benchmark parts: figures and targets, databases, servers, load, memory.

Every part (bench/ingest.py, bench/decisions.py, ...) is a script that runs alone and ends by
calling `emit(figures)`: it prints its figures as a table and, when `bench/run.py` started it,
also appends them to the JSON lines file named by BENCH_FIGURES. `bench/run.py` runs the parts
in turn and prints them all in one table.

This module imports nothing from Django, so a part can use it before it sets up Django with
the DATABASE_URL of its own bench database.
"""

import http.client
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
# A Redis database of the bench's own, so its queues and cache keys never meet a dev server's.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
# Runs that change migrations side by side can each keep a template of their own.
TEMPLATE_DATABASE = os.environ.get("BENCH_TEMPLATE_DATABASE", "omsguard_bench_template")
# Each part's database is <prefix>_<part>. Two runs of the same part at once on one server
# need different prefixes, or the second drops the first one's database.
DATABASE_PREFIX = os.environ.get("BENCH_DATABASE_PREFIX", "omsguard_bench")
GUNICORN_CONFIG = REPO_ROOT / "deploy" / "gunicorn.conf.py"
START_TIMEOUT = 60
STOP_TIMEOUT = 15


def quick_mode() -> bool:
    """True when the part runs in its quick (CI) size: --quick, or BENCH_QUICK=1 from run.py."""
    return "--quick" in sys.argv or os.environ.get("BENCH_QUICK") == "1"


# --- Figures and targets ----------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure, with the baseline it is compared with and the target it must meet.

    `passed` is None for a figure without a target (context, such as a baseline's own latency).
    """

    part: str
    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline_value: float | None = None
    target: str = ""
    passed: bool | None = None
    detail: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value:
            return None
        return self.value / self.baseline_value

    def as_json(self) -> dict:
        return asdict(self) | {"ratio": self.ratio}


def ratio_at_least(
    part: str,
    name: str,
    value: float,
    unit: str,
    *,
    baseline_name: str,
    baseline_value: float,
    minimum: float,
    detail: str = "",
) -> Figure:
    """A throughput figure that must reach `minimum` times its baseline's throughput."""
    ratio = value / baseline_value if baseline_value else 0.0
    return Figure(
        part,
        name,
        value,
        unit,
        baseline_name=baseline_name,
        baseline_value=baseline_value,
        target=f">= {minimum:.0%} of baseline",
        passed=ratio >= minimum,
        detail=detail,
    )


def at_most(
    part: str,
    name: str,
    value: float,
    unit: str,
    *,
    limit: float,
    baseline_name: str = "",
    baseline_value: float | None = None,
    detail: str = "",
) -> Figure:
    """A latency, duration or size figure that must stay under `limit` (same unit)."""
    return Figure(
        part,
        name,
        value,
        unit,
        baseline_name=baseline_name,
        baseline_value=baseline_value,
        target=f"< {limit:g} {unit}",
        passed=value < limit,
        detail=detail,
    )


def exactly(
    part: str, name: str, value: float, unit: str, *, expected: float, detail: str = ""
) -> Figure:
    """A count that must equal `expected`, such as failed requests (0) or lost orders (0)."""
    return Figure(
        part, name, value, unit, target=f"= {expected:g}", passed=value == expected, detail=detail
    )


def info(part: str, name: str, value: float, unit: str, *, detail: str = "", **baseline) -> Figure:
    """Build a figure shown for context, with no target."""
    return Figure(part, name, value, unit, detail=detail, **baseline)


def emit(figures: Sequence[Figure]) -> None:
    """Print the figures as a table and append them to the BENCH_FIGURES file when it is set."""
    print_table(figures)
    path = os.environ.get("BENCH_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as output:
            for figure in figures:
                output.write(json.dumps(figure.as_json()) + "\n")


def print_table(figures: Sequence[Figure]) -> None:
    """Print one row per figure: part, figure, value, baseline, ratio, target and PASS/MISS."""
    rows = [("part", "figure", "value", "baseline", "ratio", "target", "result")]
    for figure in figures:
        baseline = ""
        if figure.baseline_value is not None:
            baseline = f"{_number(figure.baseline_value)} {figure.unit} ({figure.baseline_name})"
        ratio = f"{figure.ratio:.2f}x" if figure.ratio is not None else ""
        result = {True: "PASS", False: "MISS", None: ""}[figure.passed]
        value = f"{_number(figure.value)} {figure.unit}"
        rows.append((figure.part, figure.name, value, baseline, ratio, figure.target, result))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for index, row in enumerate(rows):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    for figure in figures:
        if figure.detail:
            print(f"  {figure.part} / {figure.name}: {figure.detail}")


def _number(value: float) -> str:
    if value >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` percentile (0.95 for p95) of the values, inclusive method."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


# --- Databases --------------------------------------------------------------------------------


def part_database(part: str) -> str:
    """Return the name of the database a part creates, measures and drops."""
    return f"{DATABASE_PREFIX}_{part}"


def database_url(name: str) -> str:
    return f"{SERVER_URL}/{name}"


def database_create(name: str) -> str:
    """Create the database `name` as a copy of the migrated template and return its URL.

    Copying a migrated template takes a second or two, where running every migration again
    would take much longer. The template is migrated first (a no-op when nothing changed),
    unless bench/run.py already did that for all parts (BENCH_TEMPLATE_MIGRATED=1).
    """
    if os.environ.get("BENCH_TEMPLATE_MIGRATED") != "1":
        template_migrate()
    with psycopg.connect(database_url("postgres"), autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DATABASE}"')
    return database_url(name)


def database_drop(name: str) -> None:
    with psycopg.connect(database_url("postgres"), autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def template_migrate() -> None:
    """Create the template database when missing and apply any new migrations to it."""
    with psycopg.connect(database_url("postgres"), autocommit=True) as server:
        exists = server.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [TEMPLATE_DATABASE]
        ).fetchone()
        if not exists:
            server.execute(f'CREATE DATABASE "{TEMPLATE_DATABASE}"')
    environment = os.environ | {
        "DATABASE_URL": database_url(TEMPLATE_DATABASE),
        "DEBUG": "1",
        "REDIS_URL": "",
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO_ROOT,
        env=environment,
        check=True,
    )


# --- Servers and workers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_environment(*, database: str, namespace: str, **extra: str) -> dict[str, str]:
    """Build the environment of the bench's gunicorn and workers: database, Redis, queues."""
    return (
        os.environ
        | {
            "DJANGO_SETTINGS_MODULE": "omsguard.settings",
            "DATABASE_URL": database_url(database),
            "REDIS_URL": REDIS_URL,
            "OMSGUARD_CELERY_QUEUE": namespace,
            "OMSGUARD_BENCH_ENDPOINTS": "1",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-key-not-for-production"),
            "SECURE_SSL_REDIRECT": "0",
            # The limits stay on, so their cost is measured, but high enough never to refuse.
            "OMSGUARD_RATE_LIMIT_WEBHOOK": "1000000/minute",
            "OMSGUARD_RATE_LIMIT_API": "1000000/minute",
            "OMSGUARD_RATE_LIMIT_ANON": "1000000/minute",
            # No SMTP server listens here: every address confirmation email would fail and
            # be retried up to ten times. The in-memory backend builds and "sends" each
            # message once, as a working server would see it.
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        | extra
    )


def spawn(command: list[str], environment: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start a process in a session of its own, so `stop` ends it and all its children."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def gunicorn_start(port: int, environment: dict[str, str], log_dir: Path) -> subprocess.Popen:
    """Start gunicorn with deploy/gunicorn.conf.py, the configuration a deployment uses."""
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "-c",
        str(GUNICORN_CONFIG),
        "-b",
        f"127.0.0.1:{port}",
        "omsguard.wsgi",
    ]
    process = spawn(command, environment, log_dir / "gunicorn.log")
    _wait_until(lambda: _health_ok(port), [process], "gunicorn", log_dir)
    return process


def worker_start(
    *,
    queues: Iterable[str],
    nodename: str,
    environment: dict[str, str],
    log_dir: Path,
    concurrency: int = 1,
) -> subprocess.Popen:
    """Start a prefork Celery worker on `queues` and wait until it replies to a ping.

    `nodename` must be unique on the machine, such as "bench-ingest-1-<run>@127.0.0.1".
    """
    command = [sys.executable, "-m", "celery", "-A", "omsguard", "worker"]
    command += ["-Q", ",".join(queues), "-n", nodename, f"--concurrency={concurrency}"]
    command += ["--loglevel=WARNING", "--without-gossip", "--without-mingle"]
    log_name = nodename.split("@")[0]
    process = spawn(command, environment, log_dir / f"{log_name}.log")
    _wait_until(lambda: _worker_answers(nodename), [process], f"worker {nodename}", log_dir)
    return process


def stop(process: subprocess.Popen) -> None:
    """Stop a process group with SIGTERM, then SIGKILL when it is still there after 15 s."""
    for sent, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def queue_length(queue: str) -> int:
    """Tasks waiting in a queue of the bench's Redis (kombu keeps a queue as a Redis list)."""
    import redis

    with redis.Redis.from_url(REDIS_URL, socket_timeout=5) as client:
        return client.llen(queue)


def queues_delete(queues: Iterable[str]) -> None:
    """Delete the bench's queues and kombu's binding sets for them from the bench's Redis."""
    import redis

    with redis.Redis.from_url(REDIS_URL, socket_timeout=5) as client:
        for queue in queues:
            # kombu 5.7 keeps a queue's bindings in two sets named after its exchange, which
            # the bench names like the queue.
            client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


def _wait_until(ready, processes: list[subprocess.Popen], what: str, log_dir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise SystemExit(f"{what} exited early; see the logs in {log_dir}")
        if ready():
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start within {START_TIMEOUT} s; see the logs in {log_dir}")


def _health_ok(port: int) -> bool:
    try:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        client.request("GET", "/healthz")
        return client.getresponse().status == 200
    except OSError:
        return False


def _worker_answers(nodename: str) -> bool:
    # The ping goes through the bench's Redis; Django is not needed for it.
    from celery import Celery

    app = Celery(broker=REDIS_URL)
    try:
        return bool(app.control.ping(destination=[nodename], timeout=1))
    finally:
        app.close()


# --- Load -------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """Measurements of one `post_all` call: wall time, sorted latencies (s), response statuses."""

    seconds: float
    latencies: list[float]
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies) + len(self.errors)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def p(self, fraction: float) -> float:
        """Latency percentile in milliseconds."""
        return percentile(self.latencies, fraction) * 1000 if self.latencies else 0.0

    def failures(self, ok: Iterable[int] = (200, 201)) -> int:
        ok = set(ok)
        return len(self.errors) + sum(n for status, n in self.statuses.items() if status not in ok)


def post_all(
    port: int, path: str, requests: Sequence[tuple[dict[str, str], bytes]], clients: int
) -> LoadResult:
    """POST every (headers, body) from `clients` threads, each keeping its connection when the
    server allows, and return the wall time and each request's latency.

    The threads run in the bench process, so Python's GIL makes this client slower than a C
    load generator. The baselines are measured with the same client, so ratios stay fair.
    """
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    indexes = itertools.count()

    def client_loop() -> None:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        seen: Counter = Counter()
        failed: list[str] = []
        while (index := next(indexes)) < len(requests):
            headers, body = requests[index]
            sent = time.monotonic()
            try:
                client.request("POST", path, body=body, headers=headers)
                response = client.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                failed.append(f"{type(error).__name__}: {error}")
                client.close()
                continue
            mine.append(time.monotonic() - sent)
            seen[response.status] += 1
        client.close()
        with lock:
            latencies.extend(mine)
            statuses.update(seen)
            errors.extend(failed)

    started = time.monotonic()
    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(time.monotonic() - started, sorted(latencies), statuses, errors)


# --- Memory -----------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """Return the process and all its descendants (gunicorn's workers, Celery's pool)."""
    found = [pid]
    for current in found:
        for children_file in Path(f"/proc/{current}/task").glob("*/children"):
            children = [int(child) for child in children_file.read_text().split()]
            found.extend(child for child in children if child not in found)
    return found


def rss_megabytes(pid: int) -> float:
    """Resident memory of one process in MB (VmRSS), or 0 when it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def largest_rss(pid: int) -> float:
    """Return the RSS in MB of the largest process in the tree under `pid`."""
    return max((rss_megabytes(member) for member in process_tree(pid)), default=0.0)


# --- CPU --------------------------------------------------------------------------------------


def cpu_times(pids: Iterable[int]) -> dict[int, float]:
    """Return the CPU time (user and system, seconds) used so far by each of `pids`.

    Unlike wall time, it barely changes with the load other programs put on the machine, so
    it compares runs taken at different times. A process that has exited is left out.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    times = {}
    for pid in pids:
        try:
            # The command name in brackets may contain spaces; the fields after it are fixed.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return times


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """Return the CPU seconds spent between two cpu_times() readings.

    A process started in between counts in full. One that exited in between is missed, so
    the figure can only be too low.
    """
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def postgres_pids() -> list[int]:
    """Return the PostgreSQL server's processes on this machine, or [] when it runs elsewhere.

    All of them: their CPU includes whatever other clients of the same server do meanwhile.
    """
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                found.append(int(comm.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found
