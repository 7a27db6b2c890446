"""/docs and /redoc work without internet: every script and stylesheet is served by the app."""

from __future__ import annotations

import re

import httpx
import pytest


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_api_docs_load_only_local_assets(api: httpx.AsyncClient, path: str) -> None:
    page = await api.get(path)
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets, "the page loads its UI from somewhere"
    for asset in assets:
        assert asset.startswith("/"), f"{path} loads {asset} from another host"
        fetched = await api.get(asset)
        assert fetched.status_code == 200 and fetched.content, asset
    assert "fonts.googleapis" not in page.text and "cdn.jsdelivr" not in page.text
