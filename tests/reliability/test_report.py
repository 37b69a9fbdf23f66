"""The renderer that writes the reliability figures into docs/reliability.md."""

import json

import pytest

from tests.reliability.report import BEGIN, END, document_update, figures_markdown, main


def test_figures_replace_only_the_marked_part(tmp_path):
    figures = tmp_path / "figures.jsonl"
    rows = [
        {"suite": "duplicates", "name": "orders lost", "value": 0, "unit": "", "scale": "full"},
        {"suite": "duplicates", "name": "throughput", "value": 412.5, "unit": "/s", "scale": "ci"},
        {"suite": "races", "name": "reservations", "value": 10000, "unit": "", "scale": "full"},
    ]
    figures.write_text("".join(json.dumps(row) + "\n" for row in rows))
    document = tmp_path / "reliability.md"
    document.write_text(
        f"# Title\n\nProse before.\n\n{BEGIN}\nold figures\n{END}\n\nProse after.\n"
    )

    assert main(["report", str(figures), str(document)]) == 0

    text = document.read_text()
    assert text.startswith("# Title\n\nProse before.\n\n")
    assert text.endswith(f"{END}\n\nProse after.\n")
    assert "old figures" not in text
    assert "| orders lost | 0 |" in text
    assert "| throughput | 412.5 /s |" in text
    assert "| reservations | 10,000 |" in text
    assert text.index("**duplicates**") < text.index("**races**")


def test_a_document_without_markers_is_refused():
    with pytest.raises(ValueError, match="markers"):
        document_update("# No markers here\n", figures_markdown([], measured_on="x"))


def test_no_figures_leaves_the_document_alone(tmp_path):
    document = tmp_path / "reliability.md"
    document.write_text(f"{BEGIN}\nkept\n{END}\n")

    assert main(["report", str(tmp_path / "missing.jsonl"), str(document)]) == 1
    assert document.read_text() == f"{BEGIN}\nkept\n{END}\n"
