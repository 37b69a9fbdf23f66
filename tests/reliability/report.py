"""Render the figures a reliability run recorded into docs/reliability.md.

    python -m tests.reliability.report var/reliability-figures.jsonl docs/reliability.md

The figures replace everything between the `<!-- figures:begin -->` and `<!-- figures:end -->`
markers of the document; the prose around them is kept. `make reliability` runs this after
the suites.
"""

import json
import os
import platform
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

BEGIN = "<!-- figures:begin -->"
END = "<!-- figures:end -->"


def figures_load(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def figures_markdown(figures: list[dict], *, measured_on: str) -> str:
    by_suite: dict[str, list[dict]] = defaultdict(list)
    for entry in figures:
        by_suite[entry["suite"]].append(entry)

    parts = [measured_on, ""]
    for suite, entries in by_suite.items():
        parts += [f"**{suite}**", "", "| Figure | Value |", "|---|---|"]
        for entry in entries:
            unit = f" {entry['unit']}" if entry["unit"] else ""
            parts.append(f"| {entry['name']} | {_number(entry['value'])}{unit} |")
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def document_update(document: str, table: str) -> str:
    if BEGIN not in document or END not in document:
        raise ValueError(f"The document needs the markers {BEGIN} and {END}.")
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def measured_on_line(scales: set[str]) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if commit and changed:
        commit += " with uncommitted changes"
    return (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at scale {', '.join(sorted(scales))} "
        f"on {os.cpu_count()} CPU cores, Python {platform.python_version()}"
        + (f", commit {commit}" if commit else "")
        + "."
    )


def _number(value) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        usage = "usage: python -m tests.reliability.report FIGURES.jsonl DOCUMENT.md"
        print(usage, file=sys.stderr)
        return 2
    figures = figures_load(Path(argv[1]))
    if not figures:
        print(f"No figures in {argv[1]}; {argv[2]} left unchanged.", file=sys.stderr)
        return 1

    document_path = Path(argv[2])
    table = figures_markdown(
        figures, measured_on=measured_on_line({entry["scale"] for entry in figures})
    )
    document_path.write_text(
        document_update(document_path.read_text(encoding="utf-8"), table), encoding="utf-8"
    )
    print(f"Wrote {len(figures)} figures to {document_path}.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
