"""Loads every fixture module in tests/fixtures/, so a new server fixture is one new file.

Hypothesis runs without its per-example deadline: speed is measured in bench/, never asserted in
tests, and CI shares a noisy 2-core machine with real servers.
"""

from pathlib import Path

import pytest
from hypothesis import settings

pytest.register_assert_rewrite("tests.fixtures")

settings.register_profile("shelterwatch", deadline=None, print_blob=True)
settings.load_profile("shelterwatch")

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}" for p in (Path(__file__).parent / "fixtures").glob("*.py") if p.stem != "__init__"
)
