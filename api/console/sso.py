"""The sandbox partner's single-sign-on landing page: verifies a launch token once.

The token arrives in a POST body (the console's auto-submitting form), never in the URL: URLs
end up in access logs, browser history and Referer headers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.auth import runtime_of
from api.console.session import templates
from api.ratelimit import rate_limit_of
from domain.errors import BizError

router = APIRouter(include_in_schema=False)
_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@router.post("/sso/launch")
async def sso_landing(request: Request) -> Response:
    """The sandbox partner: verifies the launch token (once) and shows who is logged in."""
    rt = runtime_of(request)
    body = (await request.body()).decode("utf-8", errors="replace")
    token = (parse_qs(body).get("token") or [""])[0]
    try:
        rate_limit_of(request).check(request)
        verified = await rt.access.verify_launch(token, datetime.now(UTC))
    except BizError as err:
        return templates.TemplateResponse(
            request,
            "sso.html",
            {"error": err, "verified": None},
            status_code=err.status,
            headers=_PRIVATE,
        )
    found = rt.catalog.service(verified.service_id)
    member = await rt.directory.member(verified.workplace_id, verified.member_id)
    return templates.TemplateResponse(
        request,
        "sso.html",
        {"error": None, "verified": verified, "service": found, "member": member},
        headers=_PRIVATE,
    )
