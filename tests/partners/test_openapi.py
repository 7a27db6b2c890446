"""The published OpenAPI document (docs/partner-openapi.json) is the sandbox partner's own, and
the sandbox partner server, running as its own process, answers as the document says
(schemathesis, every request signed)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from partners.sandbox_server import openapi_text
from tests.partner_sandbox import SandboxPartnerProcess
from tests.schema_fuzz import CHECKS, fuzz_operations

DOC = Path(__file__).resolve().parents[2] / "docs" / "partner-openapi.json"
EXAMPLES = {"positive": 12, "negative": 6}
BUDGET_SECONDS = 60


def test_the_committed_document_is_the_servers() -> None:
    assert DOC.read_text(encoding="utf-8") == openapi_text(), (
        "docs/partner-openapi.json is stale: regenerate it with"
        " `.venv/bin/python -m partners.sandbox_server --openapi > docs/partner-openapi.json`"
    )


class Signed(requests.auth.AuthBase):
    """Signs each request as bizsupport does (a fresh webhook-id each time)."""

    def __init__(self, secret: str) -> None:
        self.webhook = Webhook(secret)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        key = f"contract:{uuid.uuid4().hex}"
        now = datetime.now(UTC)
        request.headers["webhook-id"] = key
        request.headers["webhook-timestamp"] = str(int(now.timestamp()))
        request.headers["webhook-signature"] = self.webhook.sign(key, now, body)
        return request


def fuzz(schema: Any, base_url: str, secret: str, subscription_id: str) -> list[str]:
    session = requests.Session()
    session.auth = Signed(secret)
    mostly = st.integers(0, 2).map(bool)

    def check(case: Any, data: Any) -> None:
        params = case.path_parameters or {}
        if "subscription_id" in params and data.draw(mostly):
            params["subscription_id"] = subscription_id  # an account that exists
        response = case.call(base_url=base_url, session=session, timeout=30)
        case.validate_response(response, checks=CHECKS)

    return fuzz_operations(schema, EXAMPLES, BUDGET_SECONDS, check)


async def test_the_sandbox_partner_conforms_to_the_document(
    partner_server: SandboxPartnerProcess,
) -> None:
    schema = schemathesis.openapi.from_dict(json.loads(DOC.read_text(encoding="utf-8")))
    service = "ubob"
    subscription_id = f"sub-contract-{uuid.uuid4().hex[:8]}"
    session = requests.Session()
    session.auth = Signed(partner_server.secrets[service])
    made = await asyncio.to_thread(
        session.put,
        f"{partner_server.url(service)}/accounts/{subscription_id}",
        json={
            "workplace_id": "wp-contract",
            "service_id": service,
            "plan_id": "p",
            "at": "2026-01-01T00:00:00+09:00",
        },
    )
    assert made.status_code == 201, made.text
    await partner_server.add_learning_record(subscription_id, "m1", "c1")
    before = await partner_server.calls()
    failures = await asyncio.to_thread(
        fuzz, schema, partner_server.url(service), partner_server.secrets[service], subscription_id
    )
    assert not failures, "\n\n".join(failures)
    after = await partner_server.calls()
    reached = {
        name: after.get(name, 0) - before.get(name, 0) for name in after if name.startswith("ubob.")
    }
    # the generated requests were signed and reached every operation, not only the 401 wall
    assert len(reached) == 7 and min(reached.values()) >= 5, reached
