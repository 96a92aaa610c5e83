"""Fixtures live in tests/fixtures/, one plugin module per kind of real part they start."""

pytest_plugins = [
    "tests.fixtures.data",
    "tests.fixtures.twin",
    "tests.fixtures.services",
    "tests.fixtures.studio",
    "tests.fixtures.service",
    "tests.fixtures.scenes",
]
