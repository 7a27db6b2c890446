"""The service catalog (R-CAT): the seven partner services, their plans and their texts.

The catalog is data, not code (R-CAT-6): it lives in ``catalog/services.json`` and is validated
when loaded. A malformed file raises :class:`CatalogError`, whose message names the file, the
entry (service id, or ``services[i]`` when the entry has no readable id) and the field, so
start-up can stop with a message an operator can act on.

Money is :class:`~decimal.Decimal`, KRW, whole won (R-CAT-4, R-BILL-1). Fees are written as
strings (or integers) in the file and serialized back as strings.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "CATALOG_ENV_VAR",
    "DEFAULT_CATALOG_PATH",
    "ID_PATTERN",
    "MAX_FEE_WON",
    "Catalog",
    "CatalogError",
    "HowToAction",
    "HowToActionKind",
    "Plan",
    "Service",
    "Terms",
    "default_catalog",
    "load_catalog",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CATALOG_PATH = REPO_ROOT / "catalog" / "services.json"
CATALOG_ENV_VAR = "BIZSUPPORT_CATALOG"

ID_PATTERN = r"^[a-z][a-z0-9-]{1,40}$"
# Sanity bound for a monthly fee: one trillion won. Anything larger is a typo in the file.
MAX_FEE_WON = Decimal(10) ** 12

HowToActionKind = Literal["guide", "inquiry", "fees", "documents"]


# --------------------------------------------------------------------------- field types


def _whole_won(value: object) -> Decimal:
    """Validate a fee: a whole, non-negative, finite number of won (R-CAT-4)."""
    if isinstance(value, bool) or isinstance(value, float):
        # Floats cannot hold money exactly; the file writes fees as strings.
        raise PydanticCustomError(
            "won_type",
            "must be a string or integer of whole won, not {type_name}",
            {"type_name": type(value).__name__},
        )
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise PydanticCustomError(
                "won_parsing", "must be a whole number of won, got '{text}'", {"text": value}
            ) from None
    else:
        raise PydanticCustomError(
            "won_type",
            "must be a string or integer of whole won, not {type_name}",
            {"type_name": type(value).__name__},
        )
    if not amount.is_finite():
        raise PydanticCustomError("won_finite", "must be a finite number of won")
    if amount > MAX_FEE_WON:
        raise PydanticCustomError(
            "won_too_large", "must be at most {limit} won", {"limit": str(MAX_FEE_WON)}
        )
    if amount != amount.to_integral_value():
        raise PydanticCustomError("won_fraction", "must be a whole number of won")
    if amount < 0:
        raise PydanticCustomError("won_negative", "must not be negative")
    # Normalize (e.g. "5E+3" or "5000.00" -> Decimal("5000")).
    return Decimal(int(amount))


Won = Annotated[
    Decimal,
    BeforeValidator(_whole_won),
    PlainSerializer(lambda amount: str(amount), return_type=str, when_used="json"),
]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty")
    return value


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc or any(ch.isspace() for ch in value):
        raise PydanticCustomError(
            "https_url", "must be an https:// URL, got '{url}'", {"url": value}
        )
    return value


Text = Annotated[str, AfterValidator(_not_blank)]
HttpsUrl = Annotated[str, AfterValidator(_https_url)]
Id = Annotated[str, Field(pattern=ID_PATTERN)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- models


class Plan(_Frozen):
    """A plan (세부 상품): monthly base fee plus monthly fee per seat, whole won (R-CAT-4)."""

    plan_id: Id
    name_ko: Text
    name_en: Text
    base_fee: Won
    seat_fee: Won


class HowToAction(_Frozen):
    """One button of the 이용 방법 area, with the seed's exact label (R-CAT-2)."""

    label: Text
    description: Text
    action: HowToActionKind


class Terms(_Frozen):
    """The terms of use the admin agrees to when applying; the version is recorded."""

    version: Text
    text: Text


class Service(_Frozen):
    """A partner service (R-CAT-2)."""

    service_id: Id
    name_ko: Text
    name_en: Text
    introduction: Text
    pricing_text: Text
    how_to_use: list[HowToAction] = Field(min_length=1)
    notes: list[Text]
    homepage_url: HttpsUrl
    inquiry_url: HttpsUrl
    terms: Terms
    plans: list[Plan] = Field(min_length=1)
    auto_grant_all_members: bool = Field(strict=True)

    @property
    def has_plan_choice(self) -> bool:
        """True when the service offers several plans (only ubob, R-CAT-3)."""
        return len(self.plans) > 1

    def plan(self, plan_id: str) -> Plan | None:
        """The plan with this id, or None if the service has no such plan."""
        for plan in self.plans:
            if plan.plan_id == plan_id:
                return plan
        return None

    @property
    def default_plan(self) -> Plan | None:
        """The only plan when the service has exactly one; None when there is a choice."""
        return self.plans[0] if len(self.plans) == 1 else None


class Catalog(_Frozen):
    """The whole catalog file (R-CAT-6)."""

    catalog_version: int = Field(strict=True, ge=1)
    sample_prices: bool = Field(strict=True)
    sample_prices_notice: Text
    services: list[Service] = Field(min_length=1)

    @field_validator("services")
    @classmethod
    def _unique_ids(cls, services: list[Service]) -> list[Service]:
        seen_services: dict[str, int] = {}
        seen_plans: dict[str, str] = {}
        for index, service in enumerate(services):
            first = seen_services.setdefault(service.service_id, index)
            if first != index:
                raise PydanticCustomError(
                    "duplicate_service_id",
                    "duplicate service id '{service_id}' (services[{first}] and services[{again}])",
                    {
                        "service_id": service.service_id,
                        "first": first,
                        "again": index,
                        "entry_index": index,
                        "entry_field": "service_id",
                    },
                )
            for plan_index, plan in enumerate(service.plans):
                owner = seen_plans.setdefault(plan.plan_id, service.service_id)
                if owner != service.service_id or any(
                    p.plan_id == plan.plan_id for p in service.plans[:plan_index]
                ):
                    raise PydanticCustomError(
                        "duplicate_plan_id",
                        "duplicate plan id '{plan_id}' (already used by service '{owner}')",
                        {
                            "plan_id": plan.plan_id,
                            "owner": owner,
                            "entry_index": index,
                            "entry_field": f"plans[{plan_index}].plan_id",
                        },
                    )
        return services

    def service(self, service_id: str) -> Service | None:
        """The service with this id, or None."""
        for service in self.services:
            if service.service_id == service_id:
                return service
        return None

    @property
    def service_ids(self) -> list[str]:
        """Service ids in catalog order."""
        return [service.service_id for service in self.services]


# --------------------------------------------------------------------------- errors


def _display_path(path: Path) -> str:
    """The file as shown in messages: relative to the repository when inside it."""
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except (ValueError, OSError):
        return str(path)


class CatalogError(Exception):
    """A catalog file that cannot be used. Names the file, the entry and the field (R-CAT-6).

    ``entry`` is the offending service's id, ``services[i]`` when that entry has no readable id,
    or None for problems outside any entry. ``field`` is a dotted path inside the entry (or the
    top-level object), e.g. ``plans[1].seat_fee``, or None when no field can be named.
    """

    def __init__(self, path: Path, entry: str | None, field: str | None, problem: str) -> None:
        self.path = path
        self.entry = entry
        self.field = field
        self.problem = problem
        parts = [_display_path(path)]
        if entry is not None:
            parts.append(entry if entry.startswith("services[") else f"service {entry!r}")
        if field is not None:
            parts.append(f"field {field!r}")
        parts.append(problem)
        super().__init__(": ".join(parts))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.entry, self.field, self.problem))


def _dotted(loc: Sequence[int | str]) -> str | None:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or None


def _entry_name(raw: object, index: int) -> str:
    fallback = f"services[{index}]"
    if not isinstance(raw, dict):
        return fallback
    services = raw.get("services")
    if not isinstance(services, list) or not 0 <= index < len(services):
        return fallback
    entry = services[index]
    service_id = entry.get("service_id") if isinstance(entry, dict) else None
    if (
        isinstance(service_id, str)
        and 0 < len(service_id) <= 64
        and service_id.isprintable()
        and not service_id.startswith("services[")
    ):
        return service_id
    return fallback


_PROBLEM_TEXT = {
    "missing": "is required but missing",
    "extra_forbidden": "is not a known field",
}


def _from_validation_error(path: Path, raw: object, exc: ValidationError) -> CatalogError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    ctx = first.get("ctx") or {}
    problem = _PROBLEM_TEXT.get(first["type"], first["msg"])
    if len(errors) > 1:
        problem += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"

    entry: str | None = None
    field: str | None
    if len(loc) >= 2 and loc[0] == "services" and isinstance(loc[1], int):
        entry = _entry_name(raw, loc[1])
        field = _dotted(loc[2:])
    elif loc == ("services",) and isinstance(ctx.get("entry_index"), int):
        entry = _entry_name(raw, ctx["entry_index"])
        field = str(ctx.get("entry_field")) if ctx.get("entry_field") else None
    else:
        field = _dotted(loc)
    return CatalogError(path, entry, field, problem)


# --------------------------------------------------------------------------- loading


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _resolve_path(path: Path | str | None) -> Path:
    if path is not None:
        return Path(path)
    override = os.environ.get(CATALOG_ENV_VAR, "").strip()
    return Path(override) if override else DEFAULT_CATALOG_PATH


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Read and validate a catalog file (R-CAT-6).

    ``path`` defaults to ``$BIZSUPPORT_CATALOG`` when set, else ``catalog/services.json`` in the
    repository. Every problem — missing or unreadable file, invalid JSON, invalid content —
    raises :class:`CatalogError`.
    """
    file = _resolve_path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CatalogError(file, None, None, "file not found") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(file, None, None, f"not valid UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise CatalogError(file, None, None, f"cannot read file ({exc.strerror})") from None

    try:
        raw = json.loads(
            text,
            parse_float=Decimal,  # exact: a fractional fee is reported, not rounded away
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicate_keys,
        )
    except json.JSONDecodeError as exc:
        raise CatalogError(
            file, None, None, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except _DuplicateKeyError as exc:
        raise CatalogError(file, None, exc.key, "key appears twice in one JSON object") from None
    except ValueError as exc:
        raise CatalogError(file, None, None, f"invalid JSON: {exc}") from None

    try:
        return Catalog.model_validate(raw)
    except ValidationError as exc:
        raise _from_validation_error(file, raw, exc) from None


@functools.lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The catalog at the default location, loaded once per process."""
    return load_catalog()
