"""settings.py: the month-end spread and the worker cache refuse what cannot work, and say why."""

from __future__ import annotations

from datetime import timedelta

import pytest

from settings import load_settings


def test_invoice_spread_is_read_in_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOICE_SPREAD_MINUTES", "90")
    assert load_settings().invoice_spread == timedelta(minutes=90)
    monkeypatch.delenv("INVOICE_SPREAD_MINUTES")
    assert load_settings().invoice_spread == timedelta(0)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("INVOICE_SPREAD_MINUTES", "1h", "whole number of minutes"),
        ("INVOICE_SPREAD_MINUTES", "1441", "between 0 and 1440"),
        ("INVOICE_SPREAD_MINUTES", "-5", "between 0 and 1440"),
        ("WORKER_CACHE_SIZE", "0", "local activities need a workflow cache"),
        ("WORKER_CACHE_SIZE", "many", "whole number"),
    ],
)
def test_a_setting_that_cannot_work_stops_the_start_with_why(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=says):
        load_settings()
