"""The Procfile, the systemd units and the gunicorn config: queue names, commands and files.

A worker line that names a queue the router no longer uses, or a command whose program or config
file is missing, fails only on the day of a deployment. These tests find it first. The last test
starts gunicorn with deploy/gunicorn.conf.py and reads /healthz through it.
"""

import http.client
import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from omsguard.queues import QUEUE_KINDS, queue_names

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"
SYSTEMD = ROOT / "deploy" / "systemd"
GUNICORN_CONFIG = ROOT / "deploy" / "gunicorn.conf.py"
ENV_EXAMPLE = ROOT / "deploy" / "omsguard.env.example"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
# The units run from a checkout at /opt/omsguard with its virtualenv in .venv.
INSTALL_DIR = "/opt/omsguard"
VENV_BIN = Path(sys.executable).parent
NAMESPACE = "omsguard"
UNITS = ["omsguard-web.service", "omsguard-worker@.service", "omsguard-beat.service"]
# Timeouts in seconds: generous bounds for a loaded CI runner, not tuned values.
START_TIMEOUT = 60
STOP_TIMEOUT = 15


def _procfile() -> dict[str, list[str]]:
    """Process type -> command words. Every line must be `type: command`."""
    processes: dict[str, list[str]] = {}
    for line in PROCFILE.read_text().splitlines():
        if not line.strip():
            continue
        match = re.fullmatch(r"([A-Za-z0-9_-]+):\s*(.+)", line)
        assert match, f"Procfile line is not `type: command`: {line!r}"
        assert match[1] not in processes, f"Procfile names {match[1]!r} twice"
        processes[match[1]] = shlex.split(match[2])
    return processes


def _unit(name: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting of a unit file, in order; keys may repeat."""
    settings: list[tuple[str, str, str]] = []
    section = ""
    for line in (SYSTEMD / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.append((section, key.strip(), value.strip()))
    return settings


def _unit_values(name: str, key: str) -> list[str]:
    return [value for _, found, value in _unit(name) if found == key]


def _unit_value(name: str, key: str) -> str:
    values = _unit_values(name, key)
    assert len(values) == 1, f"{name} sets {key} {len(values)} times"
    return values[0]


def _option(words: list[str], *names: str) -> str | None:
    """The value of a command-line option given as `-Q x`, `--queues x` or `--queues=x`."""
    for index, word in enumerate(words):
        for name in names:
            if word == name and index + 1 < len(words):
                return words[index + 1]
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def _worker_queues(words: list[str]) -> list[str]:
    queues = _option(words, "-Q", "--queues")
    assert queues, f"worker command has no -Q: {shlex.join(words)}"
    return queues.split(",")


def _is_worker(words: list[str]) -> bool:
    return words[0].endswith("celery") and "worker" in words


# --- Procfile --------------------------------------------------------------------------------


def test_procfile_worker_queues_match_router():
    workers = [words for words in _procfile().values() if _is_worker(words)]
    consumed = [queue for words in workers for queue in _worker_queues(words)]

    assert sorted(consumed) == sorted(queue_names(NAMESPACE))
    for words in workers:
        assert len(_worker_queues(words)) == 1, f"one pool per queue: {shlex.join(words)}"


def test_procfile_worker_names_unique():
    names = [
        _option(words, "-n", "--hostname") for words in _procfile().values() if _is_worker(words)
    ]

    assert None not in names
    assert len(set(names)) == len(names)


def test_procfile_has_one_beat_on_database():
    beats = [words for words in _procfile().values() if words[0] == "celery" and "beat" in words]

    assert len(beats) == 1
    scheduler = _option(beats[0], "-S", "--scheduler")
    assert scheduler == "django_celery_beat.schedulers:DatabaseScheduler"


def test_procfile_web_binds_port():
    web = _procfile()["web"]

    assert web[0] == "gunicorn"
    assert _option(web, "-c", "--config") == "deploy/gunicorn.conf.py"
    assert _option(web, "-b", "--bind") == "0.0.0.0:$PORT"
    assert web[-1] == "omsguard.wsgi"


def test_procfile_release_migrates():
    assert _procfile()["release"] == ["python", "manage.py", "migrate", "--noinput"]


def _assert_command_resolves(words: list[str], *, where: str) -> None:
    """The program exists in the venv, and the files and modules the command names exist."""
    program = Path(words[0]).name
    assert (VENV_BIN / program).exists(), f"{where}: {program} is not in {VENV_BIN}"

    if program == "python":
        assert (ROOT / words[1]).is_file(), f"{where}: {words[1]} is missing"
    if program == "gunicorn":
        config = _option(words, "-c", "--config")
        assert config and (ROOT / config).is_file(), f"{where}: gunicorn config {config} missing"
        assert importlib.util.find_spec(words[-1]), f"{where}: WSGI module {words[-1]} missing"
    if program == "celery":
        app = _option(words, "-A", "--app")
        assert app and importlib.util.find_spec(f"{app}.celery"), f"{where}: app {app} missing"
        scheduler = _option(words, "-S", "--scheduler")
        if scheduler:
            module, _, attribute = scheduler.partition(":")
            assert hasattr(importlib.import_module(module), attribute), f"{where}: {scheduler}"


def test_procfile_commands_resolve():
    for process, words in _procfile().items():
        _assert_command_resolves(words, where=f"Procfile {process}")


# --- systemd units ---------------------------------------------------------------------------


def _exec_start(name: str) -> list[str]:
    words = shlex.split(_unit_value(name, "ExecStart"))
    assert words[0].startswith(f"{INSTALL_DIR}/.venv/bin/"), f"{name}: {words[0]}"
    return words


def test_worker_unit_queue_per_instance():
    words = _exec_start("omsguard-worker@.service")

    assert _worker_queues(words) == [f"{NAMESPACE}.%i"]
    instances = [f"{NAMESPACE}.%i".replace("%i", kind) for kind in QUEUE_KINDS]
    assert instances == queue_names(NAMESPACE)


def test_deploy_doc_enables_every_worker():
    text = DEPLOY_DOC.read_text()

    for kind in QUEUE_KINDS:
        assert f"omsguard-worker@{kind}" in text


def test_beat_unit_uses_database_scheduler():
    words = _exec_start("omsguard-beat.service")

    assert "beat" in words
    assert _option(words, "-S", "--scheduler") == "django_celery_beat.schedulers:DatabaseScheduler"


def test_web_unit_runs_gunicorn_config():
    words = _exec_start("omsguard-web.service")

    assert Path(words[0]).name == "gunicorn"
    assert _option(words, "-c", "--config") == "deploy/gunicorn.conf.py"
    assert _unit_value("omsguard-web.service", "Type") == "notify"


@pytest.mark.parametrize("name", UNITS)
def test_unit_runs_as_service_user(name):
    assert _unit_value(name, "User") == "omsguard"
    assert _unit_value(name, "WorkingDirectory") == INSTALL_DIR
    assert _unit_values(name, "EnvironmentFile")[0] == "/etc/omsguard/env"
    assert _unit_value(name, "Restart") == "on-failure"
    assert _unit_value(name, "KillSignal") == "SIGTERM"
    assert _unit_value(name, "WantedBy") == "multi-user.target"


@pytest.mark.parametrize("name", [*UNITS, "omsguard-migrate.service"])
def test_unit_commands_resolve(name):
    _assert_command_resolves(_exec_start(name), where=name)


def test_migrate_unit_is_oneshot():
    words = _exec_start("omsguard-migrate.service")

    assert _unit_value("omsguard-migrate.service", "Type") == "oneshot"
    assert words[1:] == ["manage.py", "migrate", "--noinput"]


# --- The example environment file ------------------------------------------------------------


def _env_example() -> dict[str, str]:
    variables = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            variables[key] = value
    return variables


def test_env_example_names_read_variables():
    # A misspelt name in the example would be copied to every machine and silently ignored.
    sources = (ROOT / "omsguard" / "settings.py").read_text() + GUNICORN_CONFIG.read_text()
    for name in _env_example():
        if name != "DJANGO_SETTINGS_MODULE":
            assert f'"{name}"' in sources, f"{name} is read by neither settings nor gunicorn"


def test_env_example_has_no_secrets():
    variables = _env_example()

    for name in ("SECRET_KEY", "EMAIL_HOST_PASSWORD", "OMSGUARD_METRICS_TOKEN"):
        assert variables[name].startswith("<"), f"{name} must be a placeholder"
    for name in ("DATABASE_URL", "OMSGUARD_REPLICA_DATABASE_URL"):
        assert "<password>" in variables[name]


# --- gunicorn --------------------------------------------------------------------------------


def _gunicorn_config(monkeypatch, **environment: str) -> ModuleType:
    """Execute deploy/gunicorn.conf.py as gunicorn does, with `environment` set."""
    for name in ("GUNICORN_BIND", "WEB_CONCURRENCY", "GUNICORN_TIMEOUT", "GUNICORN_MAX_REQUESTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("gunicorn_conf_under_test", GUNICORN_CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gunicorn_config_defaults(monkeypatch):
    config = _gunicorn_config(monkeypatch)

    assert config.bind == "127.0.0.1:8000"
    assert config.workers == len(os.sched_getaffinity(0)) * 2 + 1
    assert config.worker_class == "sync"


def test_gunicorn_config_reads_environment(monkeypatch):
    config = _gunicorn_config(
        monkeypatch,
        GUNICORN_BIND="0.0.0.0:9000",
        WEB_CONCURRENCY="3",
        GUNICORN_TIMEOUT="20",
        GUNICORN_MAX_REQUESTS="1000",
    )

    assert config.bind == "0.0.0.0:9000"
    assert config.workers == 3
    assert config.timeout == 20
    assert config.max_requests == 1000
    assert config.max_requests_jitter == 100


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes] | None:
    try:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        client.request("GET", path, headers=headers)
        response = client.getresponse()
        return response.status, response.read()
    except OSError:
        return None


def test_gunicorn_serves_healthz(tmp_path):
    port = _free_port()
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTEST_VERSION", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    } | {
        "DJANGO_SETTINGS_MODULE": "omsguard.settings",
        # A production-like environment behind a TLS-terminating load balancer, on SQLite.
        "DEBUG": "0",
        "SECRET_KEY": "x" * 50,
        "ALLOWED_HOSTS": "oms.example.com",
        "SECURE_PROXY_SSL_HEADER": "1",
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "OMSGUARD_VAR_DIR": str(tmp_path),
        "WEB_CONCURRENCY": "1",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
    }
    command = [str(VENV_BIN / "gunicorn"), "-c", str(GUNICORN_CONFIG), "omsguard.wsgi"]
    log_path = tmp_path / "gunicorn.log"
    headers = {"Host": "oms.example.com", "X-Forwarded-Proto": "https"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        answer = None
        deadline = time.monotonic() + START_TIMEOUT
        while answer is None and time.monotonic() < deadline:
            assert process.poll() is None, f"gunicorn exited early:\n{log_path.read_text()}"
            time.sleep(0.2)
            answer = _get(port, "/healthz", headers)

        assert answer is not None, f"gunicorn did not answer:\n{log_path.read_text()}"
        assert answer[0] == 200, answer
        assert b'"database": "up"' in answer[1]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    assert process.returncode == 0, log_path.read_text()
