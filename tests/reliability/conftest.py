"""The reliability suites: every test here is marked `reliability` and prints its figures."""

import pytest

from .figures import recorded


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/reliability/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.reliability)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not recorded:
        return
    terminalreporter.section("reliability figures")
    for entry in recorded:
        unit = f" {entry.unit}" if entry.unit else ""
        terminalreporter.write_line(
            f"{entry.suite:<14} {entry.name:<52} {entry.value}{unit}  [{entry.scale}]"
        )
