"""The Korean admin console (server-rendered) and the sandbox partner's SSO landing page.

It calls the same service layer as the API, as the logged-in member: the session cookie holds a
bearer token, checked like the API's (role from the directory, wall-clock expiry). Every refusal
shows its Korean message. JavaScript only opens and closes the popups.

    labels.py   Korean words, time and money formats
    session.py  session cookie, scope dependencies, forms, flash messages, page rendering
    login.py    log in (token, or a demo member on local stacks) and out
    pages.py    the pages (GET)
    actions.py  the form posts
    sso.py      the sandbox partner's launch landing
"""

from __future__ import annotations

from fastapi import FastAPI

from api.console import actions, login, pages, session, sso


def install(app: FastAPI) -> None:
    session.install(app)
    for module in (login, pages, actions, sso):
        app.include_router(module.router)
