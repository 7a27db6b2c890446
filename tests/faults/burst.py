"""A bounded burst of admin actions through the real HTTP API, by a client that follows the
README's "Retry and 503": on a 503, a timeout or a dropped connection it sends the same request
with the same Idempotency-Key again (after Retry-After), until it gets a definitive answer or the
bound runs out.

Each workplace runs one script, its steps in order (as one admin would); workplaces run at once.
Every step is meant to succeed exactly once, so each step's effect can be counted afterwards:
an application is one `subscriptions` row, every other action one audit entry by the admin.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from domain.tokens import mint_access_token

TERMS = "2026-01-01"  # the catalog's current terms version for every service
REQUEST_BOUND = 150.0  # seconds one request is retried before it counts as stuck
ATTEMPT_TIMEOUT = 20.0  # the API answers within ~10 s (Temporal deadline) or says 503
MEMBERS = ("m1", "m2")


@dataclass(frozen=True)
class Step:
    kind: str  # apply | grant | revoke | plan_change | cancel
    service: str
    method: str
    path: str  # under /v1/workplaces/{wp}/services/{service}
    body: dict[str, Any] | None = None
    member: str | None = None  # grant/revoke: the member's suffix
    plan: str | None = None  # plan_change: the new plan
    wait_active: bool = False  # then wait, as the admin would, until the service is active

    def describe(self) -> str:
        return " ".join(x for x in (self.kind, self.service, self.member or self.plan) if x)


APPLY = {"terms_version": TERMS, "agree_terms": True}
SCRIPT = (
    Step("apply", "miricanvas", "POST", "/subscription", APPLY, wait_active=True),
    Step("grant", "miricanvas", "PUT", "/usage-permissions/{m1}", member="m1"),
    Step("grant", "miricanvas", "PUT", "/usage-permissions/{m2}", member="m2"),
    Step(
        "apply",
        "ubob",
        "POST",
        "/subscription",
        {**APPLY, "plan_id": "ubob-basic"},
        wait_active=True,
    ),
    Step("revoke", "miricanvas", "DELETE", "/usage-permissions/{m1}", member="m1"),
    Step(
        "plan_change",
        "ubob",
        "POST",
        "/subscription/plan-change",
        {"plan_id": "ubob-premium", "when": "next_window"},
        plan="ubob-premium",
    ),
    Step("cancel", "miricanvas", "POST", "/subscription/cancel"),
    Step("apply", "cartax", "POST", "/subscription", APPLY),
)


def access_token(secret: str, workplace: str | None, member: str | None) -> str:
    """A token signed with the stack's `auth-secret`: a member's of `workplace`, or with
    `workplace` None the system's (directory sync, system-wide webhook endpoints)."""
    now = datetime.now(UTC)
    if workplace is None:
        return mint_access_token(secret, member_id=None, workplace_id=None, role="system", now=now)
    return mint_access_token(secret, member_id=member, workplace_id=workplace, now=now)


@dataclass
class Outcome:
    """What the client saw for one request: every attempt, and the definitive answer if any."""

    workplace: str
    step: Step
    key: str
    attempts: list[str] = field(default_factory=list)  # "503", "timeout", "ConnectError", "200"
    status: int | None = None  # the definitive answer; None: none within the bound (stuck)
    body: Any = None
    first_sent: float = 0.0
    answered: float = 0.0

    @property
    def retried(self) -> bool:
        return len(self.attempts) > 1

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Burst:
    """Drives the scripts of `workplaces` new workplaces against one stack, counting progress."""

    def __init__(self, base_url: str, secret: str, prefix: str, workplaces: int) -> None:
        self.base_url = base_url
        self.secret = secret
        self.workplaces = [f"{prefix}-{i}-{uuid.uuid4().hex[:6]}" for i in range(workplaces)]
        self.outcomes: list[Outcome] = []
        self.sent = 0  # requests of the scripts sent at least once
        self.on_wire = 0  # attempts of the scripts' requests waiting for their answer now
        self.done = 0  # requests of the scripts answered for good (or given up)
        self.changed = asyncio.Event()

    @property
    def total(self) -> int:
        return len(self.workplaces) * len(SCRIPT)

    def token(self, workplace: str | None, member: str | None) -> str:
        return access_token(self.secret, workplace, member)

    async def create_workplaces(self) -> None:
        """Directory sync (system token) before the burst: a representative and two members."""
        async with self._client() as http:
            system = {"Authorization": f"Bearer {self.token(None, None)}"}
            for wp in self.workplaces:
                rep = {"member_id": f"{wp}-rep", "login_id": f"{wp}-rep@x", "name": "대표"}
                await self._definitive(
                    http,
                    "PUT",
                    f"/v1/workplaces/{wp}",
                    {"name": wp, "representative_admin": rep},
                    system,
                    expect=200,
                )
                for m in MEMBERS:
                    body = {"login_id": f"{wp}-{m}@x", "name": m, "role": "member"}
                    await self._definitive(
                        http,
                        "PUT",
                        f"/v1/workplaces/{wp}/members/{wp}-{m}",
                        body,
                        system,
                        expect=200,
                    )

    async def run(self) -> list[Outcome]:
        async with self._client() as http:
            await asyncio.gather(*(self._script(http, wp) for wp in self.workplaces))
        return self.outcomes

    async def wait_in_flight(self, count: int) -> None:
        """Until `count` requests have been sent and one of them is waiting for its answer (a
        kill then strikes a request in flight), or the burst is over."""
        while not (self.sent >= count and self.on_wire) and self.done < self.total:
            self.changed.clear()
            await self.changed.wait()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=ATTEMPT_TIMEOUT)

    async def _script(self, http: httpx.AsyncClient, wp: str) -> None:
        auth = {"Authorization": f"Bearer {self.token(wp, f'{wp}-rep')}"}
        for step in SCRIPT:
            path = f"/v1/workplaces/{wp}/services/{step.service}" + step.path.format(
                **{m: f"{wp}-{m}" for m in MEMBERS}
            )
            outcome = Outcome(wp, step, key=f"faults-{uuid.uuid4().hex}")
            self.outcomes.append(outcome)
            await self._send(http, outcome, path, auth)
            if step.wait_active and outcome.accepted:
                await self._wait_active(http, wp, step.service, auth)

    async def _send(
        self, http: httpx.AsyncClient, outcome: Outcome, path: str, auth: dict[str, str]
    ) -> None:
        headers = {**auth, "Idempotency-Key": outcome.key}
        outcome.first_sent = time.monotonic()
        deadline = outcome.first_sent + REQUEST_BOUND
        self.sent += 1
        while time.monotonic() < deadline:
            self._on_wire(+1)
            try:
                answer, wait = await self._attempt(
                    http, outcome.step.method, path, outcome.step.body, headers
                )
            finally:
                self._on_wire(-1)
            if isinstance(answer, httpx.Response):
                outcome.attempts.append(str(answer.status_code))
                if answer.status_code != 503:
                    outcome.status = answer.status_code
                    outcome.body = answer.json()
                    break
            else:
                outcome.attempts.append(answer)
            await asyncio.sleep(wait)
        outcome.answered = time.monotonic()
        self.done += 1
        self.changed.set()

    def _on_wire(self, change: int) -> None:
        self.on_wire += change
        self.changed.set()

    async def _attempt(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
    ) -> tuple[httpx.Response | str, float]:
        """One attempt: the response and how long to wait before the next, or what went wrong."""
        try:
            answer = await http.request(method, path, json=body, headers=headers)
        except httpx.TimeoutException:
            return "timeout", 0.5
        except httpx.TransportError as err:  # refused or dropped connection
            return type(err).__name__, 0.5
        retry_after = float(answer.headers.get("Retry-After", "1"))
        return answer, min(retry_after, 2.0)

    async def _definitive(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
        *,
        expect: int,
    ) -> Any:
        """A request outside the counted burst (setup, reads), retried the same way."""
        deadline = time.monotonic() + REQUEST_BOUND
        while True:
            answer, wait = await self._attempt(http, method, path, body, headers)
            if isinstance(answer, httpx.Response) and answer.status_code != 503:
                assert answer.status_code == expect, (method, path, answer.text)
                return answer.json()
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: no answer in {REQUEST_BOUND:.0f} s")
            await asyncio.sleep(wait)

    async def _wait_active(
        self, http: httpx.AsyncClient, wp: str, service: str, auth: dict[str, str]
    ) -> None:
        path = f"/v1/workplaces/{wp}/services/{service}/subscription"
        deadline = time.monotonic() + REQUEST_BOUND
        while time.monotonic() < deadline:
            status = await self._definitive(http, "GET", path, None, auth, expect=200)
            if status["state"] != "applied":
                return
            await asyncio.sleep(0.2)
