"""Run the benchmark parts in turn and print every figure beside its same-run baseline.

    .venv/bin/python bench/run.py [--quick] [--parts ingest,decisions,...] [--json PATH]

Each part is a script in bench/ that also runs alone (`.venv/bin/python bench/ingest.py`). The
runner starts each part as a process of its own, because each sets up Django on a bench
database of its own. It collects the figures the parts write (bench/harness.py) and prints one
table with the targets of docs/performance.md marked PASS or MISS. It writes all figures, with
the machine and the commit, to var/bench/bench-<UTC time>.json and var/bench/latest.json.

It exits 1 when a part fails to run; a missed target is printed, not an error, unless --strict.
`--quick` runs every part at its small CI size: CI runs that through tests/bench/, which checks
that the bench works, never the numbers.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import REPO_ROOT, Figure, print_table, template_migrate  # noqa: E402

# In the order they run: the parts with servers first, the large seeded databases last.
PARTS = ("ingest", "decisions", "queue_page", "dashboard", "import_skus")
RESULTS_DIR = REPO_ROOT / "var" / "bench"


def main() -> int:
    arguments = _arguments()
    started = datetime.now(UTC)
    figures_path = Path(tempfile.mkstemp(prefix="bench-figures-", suffix=".jsonl")[1])
    failed: list[str] = []
    # Once for all parts; each part then clones the template without migrating it again.
    template_migrate()
    os.environ["BENCH_TEMPLATE_MIGRATED"] = "1"
    try:
        for part in arguments.parts:
            if not _part_run(part, arguments.quick, figures_path):
                failed.append(part)
        figures = _figures_read(figures_path)
    finally:
        figures_path.unlink(missing_ok=True)

    print("\n=== OMS Guard benchmark" + (" (quick)" if arguments.quick else "") + " ===")
    print_table(figures)
    output = _results_write(arguments, started, figures, failed)
    print(f"\nresults    {output}")

    missed = [figure for figure in figures if figure.passed is False]
    print(f"targets    {sum(f.passed is True for f in figures)} met, {len(missed)} missed")
    if failed:
        print(f"FAILED     parts that did not finish: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 1 if arguments.strict and missed else 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Every part at its small CI size.")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"Comma-separated parts to run (default all: {','.join(PARTS)}).",
    )
    parser.add_argument("--json", type=Path, help="Also write the results to this file.")
    parser.add_argument("--strict", action="store_true", help="Exit 1 when a target is missed.")
    arguments = parser.parse_args()
    arguments.parts = [part.strip() for part in arguments.parts.split(",") if part.strip()]
    unknown = sorted(set(arguments.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    return arguments


def _part_run(part: str, quick: bool, figures_path: Path) -> bool:
    print(f"\n=== {part} ===", flush=True)
    command = [sys.executable, str(REPO_ROOT / "bench" / f"{part}.py")]
    if quick:
        command.append("--quick")
    environment = os.environ | {"BENCH_FIGURES": str(figures_path)}
    started = time.monotonic()
    completed = subprocess.run(command, cwd=REPO_ROOT, env=environment, check=False)
    print(f"--- {part}: exit {completed.returncode} after {time.monotonic() - started:.0f} s")
    return completed.returncode == 0


def _figures_read(path: Path) -> list[Figure]:
    figures = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = json.loads(line)
        fields.pop("ratio", None)
        figures.append(Figure(**fields))
    return figures


def _results_write(
    arguments: argparse.Namespace, started: datetime, figures: list[Figure], failed: list[str]
) -> Path:
    results = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "quick": arguments.quick,
        "parts": arguments.parts,
        "failed_parts": failed,
        "machine": _machine(),
        "commit": _commit(),
        "figures": [figure.as_json() for figure in figures],
    }
    text = json.dumps(results, indent=2)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    output = RESULTS_DIR / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    output.write_text(text)
    (RESULTS_DIR / "latest.json").write_text(text)
    if arguments.json:
        arguments.json.write_text(text)
    return arguments.json or output


def _machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "memory_gb": _memory_gb(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_gb() -> float | None:
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        return round(int(first.split()[1]) / 1024 / 1024, 1)
    except (OSError, IndexError, ValueError):
        return None


def _commit() -> str:
    completed = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout.strip() or "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
