"""The reliability suites: every test here is marked `reliability`.

Their figures are printed by the plugin in figures.py, which tests/conftest.py registers.
"""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/reliability/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.reliability)
