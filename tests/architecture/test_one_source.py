"""One source for each fact: the state groups are spelled only beside the machine."""

from __future__ import annotations

import re
from pathlib import Path

from statemachines.lifecycle import LIVE_STATES

ROOT = Path(__file__).resolve().parents[2]
CODE = [
    p
    for folder in ("domain", "store", "activities", "workflows", "services", "starter", "api")
    for p in (ROOT / folder).rglob("*")
    if p.suffix in (".py", ".sql", ".html")
]
# Two or more state names listed together: a group of states written out by hand.
GROUP = re.compile(
    r"""["'](applied|active|plan_changing|cancelled|purged)["']\s*,\s*"""
    r"""["'](applied|active|plan_changing|cancelled|purged)["']"""
)


def test_state_groups_are_written_only_in_statemachines() -> None:
    migrations = ROOT / "store" / "migrations"
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in CODE
        if migrations not in p.parents  # applied migrations are history, checked below
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if GROUP.search(line)
    ]
    assert not found, f"state groups written out outside statemachines/: {found}"


def test_the_one_slot_index_covers_exactly_the_live_states() -> None:
    """R-LIFE-1: the partial unique index (an applied migration) agrees with LIVE_STATES."""
    sql = (ROOT / "store" / "migrations" / "001_core.sql").read_text(encoding="utf-8")
    (predicate,) = re.findall(r"WHERE state IN \(([^)]*)\)", sql)
    assert tuple(s.strip(" '") for s in predicate.split(",")) == LIVE_STATES
