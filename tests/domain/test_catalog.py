"""Catalog tests (R-CAT-1..6): the shipped file and the loader's error messages."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from domain.catalog import (
    CATALOG_ENV_VAR,
    DEFAULT_CATALOG_PATH,
    Catalog,
    CatalogError,
    Plan,
    default_catalog,
    load_catalog,
)

SEVEN = ["cartax", "wishket", "miricanvas", "loai", "juju", "ubob", "tudy"]

# The 이용 방법 button labels of the operator manual (seed), per service, in order.
SEED_LABELS = {
    "cartax": ["카택스 이용 가이드", "이용 문의", "이용 요금 조회"],
    "wishket": ["위시켓 이용 가이드", "이용 내역 및 문의", "이용 요금 조회"],
    "miricanvas": ["미리캔버스 이용", "디자인 문서 관리", "이용 요금 조회"],
    "loai": ["로아이 이용", "이용 내역 및 문의", "이용 요금 조회"],
    "juju": ["주주 서비스 이용", "이용 내역 및 문의", "이용 요금 조회"],
    "ubob": ["유밥 서비스 이용", "유밥 서비스 이용 내역 및 문의", "이용 요금 조회"],
    "tudy": ["투디 서비스 이용", "투디 서비스 이용 내역 및 문의", "이용 요금 조회"],
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(DEFAULT_CATALOG_PATH)


@pytest.fixture
def raw() -> dict[str, Any]:
    """A deep copy of the shipped file's JSON, to break on purpose."""
    data: dict[str, Any] = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    return copy.deepcopy(data)


def _index(raw: dict[str, Any], service_id: str) -> int:
    return [s["service_id"] for s in raw["services"]].index(service_id)


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _load_error(path: Path) -> CatalogError:
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    return info.value


def _assert_names(err: CatalogError, path: Path, entry: str | None, field: str | None) -> None:
    message = str(err)
    assert err.path == path
    assert str(path) in message
    assert err.entry == entry
    assert err.field == field
    if entry is not None:
        assert entry in message
    if field is not None:
        assert f"field {field!r}" in message


# --------------------------------------------------------------------------- the shipped file


def test_r_cat_6_shipped_catalog_loads(catalog: Catalog) -> None:
    """R-CAT-6: the shipped catalog file validates."""
    assert catalog.catalog_version >= 1


def test_r_cat_6_default_location_and_cache() -> None:
    """R-CAT-6: the default loader reads the repository file and caches it."""
    default_catalog.cache_clear()
    try:
        first = default_catalog()
        assert first is default_catalog()
        assert first == load_catalog()
    finally:
        default_catalog.cache_clear()


def test_r_cat_1_seven_services_with_stable_ids(catalog: Catalog) -> None:
    """R-CAT-1: exactly the seven services, with their Korean names."""
    assert catalog.service_ids == SEVEN
    names = {s.service_id: s.name_ko for s in catalog.services}
    assert names == {
        "cartax": "카택스",
        "wishket": "위시켓",
        "miricanvas": "미리캔버스",
        "loai": "로아이",
        "juju": "주주",
        "ubob": "유밥",
        "tudy": "투디",
    }
    assert catalog.service("nope") is None


def test_r_cat_2_every_service_has_all_texts(catalog: Catalog) -> None:
    """R-CAT-2: names, introduction, pricing, how-to, notes, links and versioned terms."""
    for service in catalog.services:
        assert service.name_en and service.introduction and service.pricing_text
        assert service.notes
        assert service.homepage_url.startswith("https://")
        assert service.inquiry_url.startswith("https://")
        assert service.terms.version == "2026-01-01"
        assert service.terms.text


@pytest.mark.parametrize("service_id", ["cartax", "miricanvas"])
def test_r_cat_2_seed_labels_in_order(catalog: Catalog, service_id: str) -> None:
    """R-CAT-2: the 이용 방법 buttons carry the seed's labels, in the seed's order."""
    service = catalog.service(service_id)
    assert service is not None
    assert [a.label for a in service.how_to_use] == SEED_LABELS[service_id]


def test_r_cat_2_all_seed_labels_and_actions(catalog: Catalog) -> None:
    """R-CAT-2: every service's labels match the seed; the last button is 이용 요금 조회."""
    for service in catalog.services:
        assert [a.label for a in service.how_to_use] == SEED_LABELS[service.service_id]
        last = service.how_to_use[-1]
        assert (last.label, last.action) == ("이용 요금 조회", "fees")
    miricanvas = catalog.service("miricanvas")
    assert miricanvas is not None
    assert miricanvas.how_to_use[1].action == "documents"


def test_r_cancel_notes_state_cancellation_rules(catalog: Catalog) -> None:
    """R-CAT-2 / R-CANCEL-1..3: every service's notes state the cancellation rules."""
    for service in catalog.services:
        notes = " ".join(service.notes)
        assert "해지 즉시" in notes
        assert "30일" in notes
        assert "다음 달에 청구" in notes


def test_r_plan_ubob_notes(catalog: Catalog) -> None:
    """R-CAT-2 / R-PLAN / R-PERM-9: ubob's notes carry its plan-change and login-id rules."""
    ubob = catalog.service("ubob")
    assert ubob is not None
    notes = " ".join(ubob.notes)
    for phrase in (
        "월 1회",
        "최초 신청한 당일",
        "일할 계산",
        "처음부터",
        "로그인 아이디",
        "초기화",
    ):
        assert phrase in notes


def test_r_cat_3_only_ubob_has_several_plans(catalog: Catalog) -> None:
    """R-CAT-3: ubob has several plans; every other service exactly one."""
    for service in catalog.services:
        if service.service_id == "ubob":
            assert service.has_plan_choice
            assert len(service.plans) == 3
            assert service.default_plan is None
        else:
            assert not service.has_plan_choice
            assert len(service.plans) == 1
            assert service.default_plan is service.plans[0]
            assert service.default_plan.plan_id == f"{service.service_id}-standard"


def test_r_cat_3_ubob_plans_and_lookup(catalog: Catalog) -> None:
    """R-CAT-3: ubob's plans have stable ids and increasing fees; lookup by id works."""
    ubob = catalog.service("ubob")
    assert ubob is not None
    assert [p.plan_id for p in ubob.plans] == ["ubob-basic", "ubob-standard", "ubob-premium"]
    bases = [p.base_fee for p in ubob.plans]
    seats = [p.seat_fee for p in ubob.plans]
    assert bases == sorted(bases) and len(set(bases)) == 3
    assert seats == sorted(seats) and len(set(seats)) == 3
    assert ubob.plan("ubob-standard") is ubob.plans[1]
    assert ubob.plan("cartax-standard") is None


def test_r_cat_4_fees_are_whole_won_decimals(catalog: Catalog) -> None:
    """R-CAT-4: fees are Decimal whole won, serialized as strings."""
    for service in catalog.services:
        for plan in service.plans:
            for fee in (plan.base_fee, plan.seat_fee):
                assert isinstance(fee, Decimal)
                assert fee >= 0 and fee == fee.to_integral_value()
            dumped = json.loads(plan.model_dump_json())
            assert dumped["base_fee"] == str(plan.base_fee)
            assert dumped["seat_fee"] == str(plan.seat_fee)


def test_r_cat_4_pricing_text_matches_plans(catalog: Catalog) -> None:
    """R-CAT-4: the pricing text quotes each plan's fees and the billing rules."""
    for service in catalog.services:
        for plan in service.plans:
            assert f"{int(plan.base_fee):,}원" in service.pricing_text
            assert f"{int(plan.seat_fee):,}원" in service.pricing_text
        assert "일할 계산" in service.pricing_text
        assert "다음 달에 청구" in service.pricing_text


def test_r_cat_5_only_ubob_auto_grants(catalog: Catalog) -> None:
    """R-CAT-5: ubob grants usage permission to every member; the others don't."""
    granting = [s.service_id for s in catalog.services if s.auto_grant_all_members]
    assert granting == ["ubob"]


def test_r_cat_6_declared_as_sample_prices(catalog: Catalog) -> None:
    """R-CAT-6: the shipped prices are sample values and say so."""
    assert catalog.sample_prices is True
    assert "예시" in catalog.sample_prices_notice
    assert "Sample prices" in catalog.sample_prices_notice
    for service in catalog.services:
        assert "표시된 요금은 예시 값입니다" in service.pricing_text


def test_r_cat_4_plan_normalizes_and_round_trips() -> None:
    """R-CAT-4: a plan accepts strings, ints and Decimals of whole won."""
    fields: dict[str, Any] = {"plan_id": "x-standard", "name_ko": "엑스", "name_en": "X"}
    plan = Plan.model_validate({**fields, "base_fee": "5E+3", "seat_fee": Decimal("10.00")})
    assert plan.base_fee == Decimal(5000) and str(plan.base_fee) == "5000"
    assert str(plan.seat_fee) == "10"
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
    with pytest.raises(ValidationError):
        Plan.model_validate({**fields, "base_fee": 1.5, "seat_fee": 0})
    assert Plan.model_validate({**fields, "base_fee": 0, "seat_fee": 7}).seat_fee == 7


def test_r_cat_6_models_are_frozen(catalog: Catalog) -> None:
    """R-CAT-6: catalog objects cannot be changed after loading."""
    ubob = catalog.service("ubob")
    assert ubob is not None
    with pytest.raises(ValidationError):
        ubob.auto_grant_all_members = False  # type: ignore[misc]


def test_r_cat_6_env_var_overrides_default(
    tmp_path: Path, raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """R-CAT-6: BIZSUPPORT_CATALOG points the loader at another file."""
    raw["catalog_version"] = 7
    path = _write(tmp_path, raw)
    monkeypatch.setenv(CATALOG_ENV_VAR, str(path))
    assert load_catalog().catalog_version == 7


# --------------------------------------------------------------------------- broken files


Breaker = Callable[[dict[str, Any]], None]


def _set_fee(value: Any) -> Breaker:
    def breaker(raw: dict[str, Any]) -> None:
        raw["services"][_index(raw, "ubob")]["plans"][1]["seat_fee"] = value

    return breaker


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("5000.5", "whole number of won"),
        ("-100", "negative"),
        ("abc", "whole number of won"),
        ("NaN", "finite"),
    ],
)
def test_r_cat_6_bad_fee_names_file_entry_field(
    tmp_path: Path, raw: dict[str, Any], value: str, problem: str
) -> None:
    """R-CAT-4 / R-CAT-6: a fractional, negative or non-numeric fee stops loading."""
    _set_fee(value)(raw)
    path = _write(tmp_path, raw)
    err = _load_error(path)
    _assert_names(err, path, "ubob", "plans[1].seat_fee")
    assert problem in str(err)


def test_r_cat_6_fractional_fee_as_json_number(tmp_path: Path, raw: dict[str, Any]) -> None:
    """R-CAT-4 / R-CAT-6: a JSON number with a fraction is reported, not rounded."""
    _set_fee("@SENTINEL@")(raw)
    path = tmp_path / "broken.json"
    text = json.dumps(raw, ensure_ascii=False).replace('"@SENTINEL@"', "5000.5")
    path.write_text(text, encoding="utf-8")
    err = _load_error(path)
    _assert_names(err, path, "ubob", "plans[1].seat_fee")
    assert "whole number of won" in str(err)


def test_r_cat_6_message_format(tmp_path: Path, raw: dict[str, Any]) -> None:
    """R-CAT-6: the message reads `<file>: service '<id>': field '<path>': <problem>`."""
    _set_fee("0.5")(raw)
    path = _write(tmp_path, raw)
    err = _load_error(path)
    assert str(err) == (
        f"{path}: service 'ubob': field 'plans[1].seat_fee': must be a whole number of won"
    )


def test_r_cat_6_missing_field(tmp_path: Path, raw: dict[str, Any]) -> None:
    """R-CAT-6: a missing field is named."""
    del raw["services"][_index(raw, "wishket")]["inquiry_url"]
    path = _write(tmp_path, raw)
    err = _load_error(path)
    _assert_names(err, path, "wishket", "inquiry_url")
    assert "missing" in str(err)


def test_r_cat_6_missing_nested_field(tmp_path: Path, raw: dict[str, Any]) -> None:
    """R-CAT-6: a missing field inside a plan is named with its dotted path."""
    del raw["services"][_index(raw, "cartax")]["plans"][0]["base_fee"]
    path = _write(tmp_path, raw)
    _assert_names(_load_error(path), path, "cartax", "plans[0].base_fee")


def test_r_cat_6_missing_top_level_field(tmp_path: Path, raw: dict[str, Any]) -> None:
    """R-CAT-6: a missing top-level field has no entry but names the field."""
    del raw["sample_prices"]
    path = _write(tmp_path, raw)
    _assert_names(_load_error(path), path, None, "sample_prices")


def test_r_cat_6_duplicate_service_id(tmp_path: Path, raw: dict[str, Any]) -> None:
    """R-CAT-6: two entries with one service id are refused; the second is named."""
    clone = copy.deepcopy(raw["services"][_index(raw, "juju")])
    for plan in clone["plans"]:
        plan["plan_id"] = plan["plan_id"].replace("juju", "juju2")
    raw["services"].append(clone)
    path = _write(tmp_path, raw)
    err = _load_error(path)
    _assert_names(err, path, "juju", "service_id")
    assert "duplicate service id" in str(err)


def test_r_cat_6_duplicate_plan_id(tmp_path: Path, raw: dict[str, Any]) -> None:
    """R-CAT-6: plan ids are unique across the catalog."""
    raw["services"][_index(raw, "tudy")]["plans"][0]["plan_id"] = "ubob-basic"
    path = _write(tmp_path, raw)
    err = _load_error(path)
    _assert_names(err, path, "tudy", "plans[0].plan_id")
    assert "duplicate plan id" in str(err)


def test_r_cat_6_unknown_extra_field(tmp_path: Path, raw: dict[str, Any]) -> None:
    """R-CAT-6: an unknown field (e.g. a typo) is refused, not ignored."""
    raw["services"][_index(raw, "loai")]["terms"]["verison"] = "2026-02-01"
    path = _write(tmp_path, raw)
    err = _load_error(path)
    _assert_names(err, path, "loai", "terms.verison")
    assert "not a known field" in str(err)


def test_r_cat_6_entry_without_readable_id(tmp_path: Path, raw: dict[str, Any]) -> None:
    """R-CAT-6: an entry with no usable service_id is named by its index."""
    index = _index(raw, "miricanvas")
    del raw["services"][index]["service_id"]
    path = _write(tmp_path, raw)
    err = _load_error(path)
    _assert_names(err, path, f"services[{index}]", "service_id")


@pytest.mark.parametrize(
    ("breaker", "entry", "field"),
    [
        (lambda r: r["services"][0].update(service_id="Bad ID"), "Bad ID", "service_id"),
        (lambda r: r["services"][0].update(plans=[]), "cartax", "plans"),
        (lambda r: r["services"][0].update(homepage_url="http://x.test"), "cartax", "homepage_url"),
        (
            lambda r: r["services"][0].update(auto_grant_all_members="true"),
            "cartax",
            "auto_grant_all_members",
        ),
        (
            lambda r: r["services"][0]["how_to_use"][0].update(action="open"),
            "cartax",
            "how_to_use[0].action",
        ),
        (lambda r: r["services"][0].update(name_ko="  "), "cartax", "name_ko"),
        (lambda r: r.update(catalog_version="1"), None, "catalog_version"),
    ],
)
def test_r_cat_6_other_invalid_values(
    tmp_path: Path, raw: dict[str, Any], breaker: Breaker, entry: str | None, field: str
) -> None:
    """R-CAT-6: bad ids, empty plan lists, non-https links, loose types, blank texts."""
    breaker(raw)
    path = _write(tmp_path, raw)
    _assert_names(_load_error(path), path, entry, field)


def test_r_cat_6_invalid_json(tmp_path: Path) -> None:
    """R-CAT-6: a JSON syntax error names the file and the position."""
    path = tmp_path / "broken.json"
    path.write_text('{"catalog_version": 1,\n  "services": [,]}', encoding="utf-8")
    err = _load_error(path)
    _assert_names(err, path, None, None)
    assert "invalid JSON at line 2" in str(err)


def test_r_cat_6_duplicate_json_key(tmp_path: Path) -> None:
    """R-CAT-6: a key written twice in one object is refused, not silently overwritten."""
    path = tmp_path / "broken.json"
    path.write_text('{"catalog_version": 1, "catalog_version": 2}', encoding="utf-8")
    _assert_names(_load_error(path), path, None, "catalog_version")


def test_r_cat_6_not_an_object(tmp_path: Path) -> None:
    """R-CAT-6: a file whose top level is not an object is refused."""
    path = _write(tmp_path, [1, 2, 3])
    _assert_names(_load_error(path), path, None, None)


def test_r_cat_6_missing_file(tmp_path: Path) -> None:
    """R-CAT-6: a missing file is a CatalogError naming the file."""
    path = tmp_path / "nope.json"
    err = _load_error(path)
    _assert_names(err, path, None, None)
    assert "not found" in str(err)


def test_r_cat_6_default_path_message_is_repo_relative() -> None:
    """R-CAT-6: errors about the shipped file show it as catalog/services.json."""
    err = CatalogError(DEFAULT_CATALOG_PATH, "ubob", "plans[1].seat_fee", "must be whole")
    assert str(err) == (
        "catalog/services.json: service 'ubob': field 'plans[1].seat_fee': must be whole"
    )
