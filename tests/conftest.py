"""The suite runs against real servers on free loopback ports, started once per session."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.s3",
    "tests.fixtures.app",
]
