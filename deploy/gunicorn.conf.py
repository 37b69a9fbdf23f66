"""gunicorn settings for OMS Guard's web nodes: `gunicorn -c deploy/gunicorn.conf.py omsguard.wsgi`.

The Procfile, the systemd unit and `make bench` all start gunicorn with this file, so the
benchmark measures the configuration a deployment runs. Environment variables override the
defaults; docs/deploy.md explains the choices.
"""

import os

# The Procfile passes --bind 0.0.0.0:$PORT, which overrides this; a systemd node sets
# GUNICORN_BIND to the address its load balancer connects to.
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# Sync workers: each request holds a worker while it waits for PostgreSQL and Redis, so twice
# the cores plus one keeps the CPUs busy while some workers wait (gunicorn's own advice). The
# cores are those this process may run on (a container's cpuset), not all of the host's.
# NOTE: a CPU quota (docker --cpus, a Kubernetes limit) does not show here; set WEB_CONCURRENCY.
# os.sched_getaffinity exists on Linux only; elsewhere count all cores.
cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
workers = int(os.environ.get("WEB_CONCURRENCY", cores * 2 + 1))
worker_class = "sync"

# A webhook sender gives up after a few seconds (Shopify: 5 s). A request still running after
# 30 s is stuck, so gunicorn replaces its worker.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30

# Replace each worker after about this many requests, so a slow leak in a library cannot grow
# a worker past its memory budget (docs/performance.md). The jitter spreads the restarts.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = max_requests // 10

# The load balancer in front logs requests; OMS Guard's own JSON logs go to stderr.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
