"""One real dev stack for the kill matrix (tests/faults), stopped and its cluster destroyed even
when a scenario fails; the matrix's table is printed at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.matrix import TABLE, format_table
from tests.faults.stack import DevStack


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    running = DevStack()
    try:
        running.start()
        yield running
    finally:
        running.destroy()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TABLE:
        terminalreporter.write_sep("-", "kill matrix (also test-artifacts/faults.json)")
        terminalreporter.write_line(format_table(TABLE))
