"""Every test argument named ``row`` runs over the fixture table (one row per public distribution
class, :mod:`distribution_fixtures`), with the row's known bugs as ``xfail(strict=True)``."""

import pytest
from distribution_fixtures import FIXTURES


def pytest_generate_tests(metafunc):
    if "row" in metafunc.fixturenames:
        name = metafunc.function.__name__
        metafunc.parametrize("row", [pytest.param(row, id=row.name, marks=row.marks_for(name)) for row in FIXTURES])
