"""`make run` names the metrics URLs (devstack/stack.py announce)."""

from __future__ import annotations

import dataclasses

import pytest

from devstack.stack import metrics_lines
from settings import load_settings


def test_metrics_urls_with_safe_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORKER_METRICS_PORT", "METRICS_BIND_ADDRESS", "METRICS_PUBLIC", "API_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.worker_metrics_address == "127.0.0.1:9464"  # loopback unless told
    assert not settings.metrics_public
    api, worker = metrics_lines(settings)
    assert "http://127.0.0.1:8000/metrics" in api and "token --system" in api
    assert "http://127.0.0.1:9464/metrics" in worker


@pytest.mark.parametrize("port", ["0", ""])
def test_worker_metrics_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("WORKER_METRICS_PORT", port)
    settings = load_settings()
    assert settings.worker_metrics_address is None
    assert "off" in metrics_lines(settings)[1]


def test_public_metrics_are_named_so() -> None:
    settings = dataclasses.replace(load_settings(), metrics_public=True)
    assert "METRICS_PUBLIC=1" in metrics_lines(settings)[0]
