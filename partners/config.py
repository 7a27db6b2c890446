"""Where each service's partner is and the secret bizsupport signs its requests with.

For every service in the catalog: `BIZSUPPORT_PARTNER_URL_<SERVICE>` (the partner's base URL)
and `BIZSUPPORT_PARTNER_SECRET_<SERVICE>` (`whsec_<base64>`), the service id upper-cased
(`BIZSUPPORT_PARTNER_URL_CARTAX`). The environment wins; a JSON file named by
`BIZSUPPORT_PARTNER_CONFIG` ({"cartax": {"url": ..., "secret": ...}}) may add services the
environment does not set. docs/partners.md says how a partner is connected step by step.

Secrets are never logged nor shown: `PartnerEndpoint.secret` is left out of its repr, and every
error names the setting, not its value.
"""

from __future__ import annotations

import binascii
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

URL_SETTING = "BIZSUPPORT_PARTNER_URL_{}"
SECRET_SETTING = "BIZSUPPORT_PARTNER_SECRET_{}"
CONFIG_FILE_SETTING = "BIZSUPPORT_PARTNER_CONFIG"
SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24


class PartnerConfigError(Exception):
    """A partner setting is missing or malformed; the message names the service and setting."""


def url_setting(service_id: str) -> str:
    return URL_SETTING.format(service_id.upper())


def secret_setting(service_id: str) -> str:
    return SECRET_SETTING.format(service_id.upper())


@dataclass(frozen=True)
class PartnerEndpoint:
    service_id: str
    url: str  # the base URL, without a trailing slash
    secret: str = field(repr=False)

    def signer(self) -> Webhook:
        return Webhook(self.secret)


def check_url(service_id: str, url: str, where: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PartnerConfigError(
            f"{where} for service {service_id} must be an http(s) URL with a host, got {url!r}"
        )
    if parts.query or parts.fragment:
        raise PartnerConfigError(
            f"{where} for service {service_id} must be a base URL without ?query or #fragment"
        )
    return url.rstrip("/")


def check_secret(service_id: str, secret: str, where: str) -> str:
    """`whsec_` and the base64 of at least 24 random bytes; the value is never repeated back."""
    problem = None
    if not secret.startswith(SECRET_PREFIX):
        problem = f"must start with {SECRET_PREFIX}"
    else:
        try:
            raw = binascii.a2b_base64(secret[len(SECRET_PREFIX) :].encode())
        except (binascii.Error, ValueError):
            problem = "must be whsec_ followed by base64"
        else:
            if len(raw) < MIN_SECRET_BYTES:
                problem = f"must hold at least {MIN_SECRET_BYTES} bytes (base64 after whsec_)"
    if problem:
        raise PartnerConfigError(f"{where} for service {service_id} {problem} (value not shown)")
    return secret


def _from_file(path: Path) -> dict[str, dict[str, str]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise PartnerConfigError(f"{CONFIG_FILE_SETTING}: cannot read {path}: {err}") from None
    except ValueError as err:
        raise PartnerConfigError(f"{CONFIG_FILE_SETTING}: {path} is not JSON: {err}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise PartnerConfigError(
            f'{CONFIG_FILE_SETTING}: {path} must map service ids to {{"url", "secret"}}'
        )
    return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in raw.items()}


def load_partner_endpoints(
    service_ids: Iterable[str], env: Mapping[str, str] | None = None
) -> dict[str, PartnerEndpoint]:
    """Every service's endpoint, or PartnerConfigError naming the first setting that is missing
    or wrong. A worker calls this at start and refuses to start on an error."""
    env = os.environ if env is None else env
    file_path = env.get(CONFIG_FILE_SETTING)
    from_file = _from_file(Path(file_path)) if file_path else {}
    endpoints = {}
    for service_id in service_ids:
        filed = from_file.get(service_id, {})
        url_name, secret_name = url_setting(service_id), secret_setting(service_id)
        url = env.get(url_name) or filed.get("url")
        url_where = url_name if env.get(url_name) else f"{file_path} {service_id}.url"
        secret = env.get(secret_name) or filed.get("secret")
        secret_where = secret_name if env.get(secret_name) else f"{file_path} {service_id}.secret"
        if not url:
            raise PartnerConfigError(
                f"{url_name} is not set: service {service_id} needs its partner's base URL"
                f" (docs/partners.md, 'Connecting a partner')"
            )
        if not secret:
            raise PartnerConfigError(
                f"{secret_name} is not set: service {service_id} needs the secret its partner"
                f" checks signatures with (docs/partners.md, 'Connecting a partner')"
            )
        endpoints[service_id] = PartnerEndpoint(
            service_id,
            check_url(service_id, url, url_where),
            check_secret(service_id, secret, secret_where),
        )
    return endpoints
