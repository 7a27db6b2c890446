"""The sandbox partner's single-sign-on landing page: verifies a launch token once."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.auth import runtime_of
from api.console.session import templates
from domain.errors import BizError
from store import directory

router = APIRouter(include_in_schema=False)


@router.get("/sso/launch")
async def sso_landing(request: Request, token: str = "", service: str = "") -> Response:
    """The sandbox partner: verifies the launch token (once) and shows who is logged in."""
    rt = runtime_of(request)
    try:
        verified = await rt.access.verify_launch(token, datetime.now(UTC))
    except BizError as err:
        return templates.TemplateResponse(
            request, "sso.html", {"error": err, "verified": None}, status_code=err.status
        )
    found = rt.catalog.service(verified.service_id)
    member = await directory.member(rt.pool, verified.workplace_id, verified.member_id)
    return templates.TemplateResponse(
        request,
        "sso.html",
        {"error": None, "verified": verified, "service": found, "member": member},
    )
