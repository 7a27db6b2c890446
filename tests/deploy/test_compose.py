"""Static checks of docker-compose.yml and the Dockerfile.

No Docker engine is needed: the file is parsed and checked for the contract the stack depends on
(start order, pinned images, the app's commands, search attributes, published ports, volumes).
When the `docker compose` CLI is present, Compose itself validates the file too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

EXPECTED_SERVICES = {
    "temporal",
    "temporal-ui",
    "app-db",
    "temporal-db",
    "migrate",
    "worker",
    "api",
    "prometheus",
    "grafana",
}
VALID_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
SEARCH_ATTRIBUTES = ("WorkplaceId", "ServiceId", "SubscriptionState", "PlanId")
APP_COMMANDS = {
    "migrate": ["python", "-m", "store.migrate"],
    "worker": ["python", "worker.py"],
    "api": ["uvicorn", "api.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"],
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), "docker-compose.yml is not a mapping"
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict) and found, "docker-compose.yml has no services"
    return found


def _as_argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(part) for part in value]


def _script_text(service: dict[str, Any]) -> str:
    return " ".join(_as_argv(service.get("entrypoint")) + _as_argv(service.get("command")))


def _image_tag(image: str) -> str | None:
    """The tag of an image reference, or None when it has neither a tag nor a digest."""
    if "@" in image:
        return image.split("@", 1)[1]
    last_part = image.rsplit("/", 1)[-1]
    if ":" not in last_part:
        return None
    return last_part.rsplit(":", 1)[1]


def _published_ports(service: dict[str, Any]) -> set[tuple[str, str]]:
    """(host port, container port) pairs from short and long port syntax."""
    pairs: set[tuple[str, str]] = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            if port.get("published") is not None:
                pairs.add((str(port["published"]), str(port["target"])))
            continue
        parts = str(port).split("/", 1)[0].split(":")
        if len(parts) >= 2:
            pairs.add((parts[-2], parts[-1]))
    return pairs


def _named_volume_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "volume" and volume.get("source"):
                sources.append(volume["source"])
            continue
        source = str(volume).split(":", 1)[0] if ":" in str(volume) else ""
        if source and not source.startswith((".", "/", "~", "$")):
            sources.append(source)
    return sources


def _search_attribute_services(services: dict[str, dict[str, Any]]) -> list[str]:
    return [
        name for name, svc in services.items() if "search-attribute create" in _script_text(svc)
    ]


def test_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the Compose spec has no top-level `version:`"


def test_expected_services_exist(services: dict[str, dict[str, Any]]) -> None:
    missing = EXPECTED_SERVICES - services.keys()
    assert not missing, f"missing services: {sorted(missing)}"


def test_every_service_has_an_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    lacking = [name for name, svc in services.items() if not (svc.get("image") or svc.get("build"))]
    assert not lacking, f"services without image or build: {lacking}"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        image = svc.get("image")
        if image is None:
            continue
        assert "$" not in image, f"{name}: image {image!r} is not pinned in the file"
        tag = _image_tag(image)
        assert tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} uses latest"


def test_app_services_build_the_project(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_COMMANDS:
        assert services[name].get("build") == ".", f"{name} must build the project's Dockerfile"


def test_depends_on_uses_long_form_with_valid_conditions(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        depends_on = svc.get("depends_on")
        if depends_on is None:
            continue
        assert isinstance(depends_on, dict), f"{name}: depends_on must use the long form"
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            assert isinstance(spec, dict), f"{name} -> {target}: missing condition"
            condition = spec.get("condition")
            assert condition in VALID_CONDITIONS, f"{name} -> {target}: bad condition {condition!r}"
            if condition == "service_healthy":
                healthcheck = services[target].get("healthcheck")
                assert healthcheck and not healthcheck.get("disable"), (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
                )


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    def condition(service: str, target: str) -> str | None:
        return services[service].get("depends_on", {}).get(target, {}).get("condition")

    assert condition("migrate", "app-db") == "service_healthy"
    assert condition("temporal", "temporal-db") == "service_healthy"
    assert condition("temporal-ui", "temporal") == "service_healthy"

    registrations = _search_attribute_services(services)
    assert registrations, "no service registers the search attributes"
    for app in ("worker", "api"):
        assert condition(app, "migrate") == "service_completed_successfully"
        assert condition(app, "temporal") == "service_healthy"
        assert any(
            condition(app, registration) == "service_completed_successfully"
            for registration in registrations
        ), f"{app} must wait for the search-attribute registration"


def test_temporal_schema_is_set_up_before_the_server(services: dict[str, dict[str, Any]]) -> None:
    temporal_image = services["temporal"]["image"]
    uses_auto_setup = temporal_image.startswith("temporalio/auto-setup")
    schema_jobs = [
        name
        for name, svc in services.items()
        if str(svc.get("image", "")).startswith("temporalio/admin-tools")
        and "temporal-sql-tool" in _script_text(svc)
    ]
    assert uses_auto_setup or schema_jobs, "nothing sets up Temporal's SQL schema"
    for job in schema_jobs:
        script = _script_text(services[job])
        for database in ("temporal", "temporal_visibility"):
            assert re.search(rf"\b{database}\b", script), f"{job} does not set up {database}"
        depends_on = services["temporal"].get("depends_on", {})
        assert depends_on.get(job, {}).get("condition") == "service_completed_successfully"
        tool_version = _image_tag(services[job]["image"])
        assert tool_version == _image_tag(temporal_image), "admin-tools and server versions differ"


def test_app_commands(services: dict[str, dict[str, Any]]) -> None:
    for name, expected in APP_COMMANDS.items():
        assert _as_argv(services[name].get("command")) == expected, f"{name} runs the wrong command"


def test_worker_runs_two_replicas(services: dict[str, dict[str, Any]]) -> None:
    assert services["worker"].get("deploy", {}).get("replicas") == 2


def test_search_attributes_are_registered_as_keywords(
    services: dict[str, dict[str, Any]],
) -> None:
    registrations = _search_attribute_services(services)
    assert registrations, "no service runs `temporal operator search-attribute create`"
    script = " ".join(_script_text(services[name]) for name in registrations)
    for attribute in SEARCH_ATTRIBUTES:
        pattern = rf"--name\s+{attribute}\s+--type\s+Keyword\b"
        assert re.search(pattern, script), f"search attribute {attribute} is not registered"
    for name in registrations:
        image = str(services[name].get("image", ""))
        assert image.startswith("temporalio/admin-tools:"), f"{name} should use admin-tools"
        condition = services[name].get("depends_on", {}).get("temporal", {}).get("condition")
        assert condition == "service_healthy", f"{name} must wait for a healthy server"


def test_ports_are_published(services: dict[str, dict[str, Any]]) -> None:
    assert ("8233", "8080") in _published_ports(services["temporal-ui"])
    assert ("8000", "8000") in _published_ports(services["api"])
    assert ("9090", "9090") in _published_ports(services["prometheus"])
    assert ("3000", "3000") in _published_ports(services["grafana"])
    assert not services["worker"].get("ports"), "worker metrics stay inside the compose network"


def _defaults(text: str) -> str:
    """`text` as Compose reads it with none of its variables set: `${VAR:-default}` → default."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", text)


def _published_on(port: str | dict[str, Any]) -> str:
    """The host address a published port binds to, with defaults applied ("" = every one)."""
    if isinstance(port, dict):
        return _defaults(str(port.get("host_ip", "")))
    resolved = _defaults(str(port)).split("/", 1)[0]
    parts = resolved.rsplit(":", 2)
    return parts[0].strip("[]") if len(parts) == 3 else ""


def test_ports_are_published_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    """Neither the API nor the Temporal UI has a login in front of it: by default nothing is
    reachable from other machines."""
    published = [(name, port) for name, svc in services.items() for port in svc.get("ports", [])]
    assert published
    for name, port in published:
        assert _published_on(port) == "127.0.0.1", f"{name} publishes {port!r} beyond loopback"
    assert _published_on("${BIZSUPPORT_PUBLISH_IP:-127.0.0.1}:8000:8000") == "127.0.0.1"
    assert _published_on("8000:8000") == ""
    assert _published_on("0.0.0.0:8000:8000") == "0.0.0.0"


def test_temporal_ui_is_read_only_unless_asked(services: dict[str, dict[str, Any]]) -> None:
    env = services["temporal-ui"].get("environment", {})
    assert isinstance(env, dict)
    value = str(env.get("TEMPORAL_DISABLE_WRITE_ACTIONS", ""))
    assert _defaults(value).lower() == "true", "the UI must default to read-only"
    assert str(env.get("TEMPORAL_AUTH_CLIENT_SECRET", "")) == "", "no OIDC secret in the file"


def test_readme_says_how_to_put_auth_in_front() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    production = readme.split("## Production topology", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "127.0.0.1",
        "reverse proxy",
        "TEMPORAL_DISABLE_WRITE_ACTIONS",
        "TEMPORAL_AUTH_ENABLED",
        "TEMPORAL_AUTH_PROVIDER_URL",
        "TEMPORAL_AUTH_CALLBACK_URL",
        "BIZSUPPORT_PUBLISH_IP",
    ):
        assert needle in production, f"README's production section does not mention {needle}"


def test_databases_have_healthchecks_and_named_volumes(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("temporal-db", "app-db"):
        svc = services[name]
        assert str(svc["image"]).startswith("postgres:"), f"{name} is not PostgreSQL"
        assert "pg_isready" in " ".join(_as_argv(svc["healthcheck"]["test"]))
        assert _named_volume_sources(svc), f"{name} keeps its data in no named volume"
    temporal_volumes = set(_named_volume_sources(services["temporal-db"]))
    assert temporal_volumes.isdisjoint(_named_volume_sources(services["app-db"]))


def test_referenced_named_volumes_are_declared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    for name, svc in services.items():
        for source in _named_volume_sources(svc):
            assert source in declared, f"{name} uses undeclared volume {source!r}"


def test_referenced_configs_are_declared(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set((compose.get("configs") or {}).keys())
    for name, svc in services.items():
        for config in svc.get("configs", []):
            source = config["source"] if isinstance(config, dict) else config
            assert source in declared, f"{name} uses undeclared config {source!r}"


def test_api_healthcheck_probes_healthz(services: dict[str, dict[str, Any]]) -> None:
    probe = " ".join(_as_argv(services["api"]["healthcheck"]["test"]))
    assert "http://localhost:8000/healthz" in probe
    assert "urllib" in probe, "python:3.11-slim has no curl; probe with urllib"


def test_app_environment(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_COMMANDS:
        env = services[name].get("environment", {})
        assert isinstance(env, dict), f"{name}: environment should be a mapping"
        assert str(env.get("DATABASE_URL", "")).startswith("postgresql://"), name
        assert "@app-db:5432/" in str(env["DATABASE_URL"]), f"{name} must use app-db"
        assert env.get("TEMPORAL_ADDRESS") == "temporal:7233", name
        assert "TEMPORAL_NAMESPACE" in env and "TEMPORAL_TASK_QUEUE" in env, name
    for name in ("worker", "api"):
        secret = str(services[name]["environment"].get("BIZSUPPORT_AUTH_SECRET", ""))
        assert re.fullmatch(r"\$\{BIZSUPPORT_AUTH_SECRET:\?.+\}", secret), (
            f"{name}: BIZSUPPORT_AUTH_SECRET must be required from the environment"
        )


def test_dockerfile() -> None:
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    instructions = [
        line.strip()
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    keywords = [line.split(None, 1)[0].upper() for line in instructions]
    assert re.match(r"FROM\s+python:3\.11-slim\b", instructions[0], re.IGNORECASE)
    assert "CMD" in keywords, "Dockerfile has no CMD"
    cmd = instructions[len(keywords) - 1 - keywords[::-1].index("CMD")]
    assert "worker.py" in cmd, "the image's default command should run the worker"
    users = [
        line.split(None, 1)[1].strip() for line in instructions if line.upper().startswith("USER ")
    ]
    assert users and users[-1] not in {"root", "0", "0:0"}, "the image must run as a non-root user"
    assert re.search(r"pip install (\S+ )*\.(\s|$)", DOCKERFILE.read_text(encoding="utf-8"))


def _docker_compose_available() -> str | None:
    """None when `docker compose` can run, else why it cannot."""
    if shutil.which("docker") is None:
        return "docker CLI is not installed"
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:
        reason = (probe.stderr or probe.stdout).strip().splitlines()
        return f"docker compose plugin is missing: {reason[0] if reason else probe.returncode}"
    return None


def test_docker_compose_config_is_valid() -> None:
    unavailable = _docker_compose_available()
    if unavailable:
        pytest.skip(unavailable)

    def config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "-q"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    required = {
        "BIZSUPPORT_AUTH_SECRET": "test-secret",
        "METRICS_TOKEN": "test-metrics-token",
        "GRAFANA_ADMIN_PASSWORD": "test-password",
        "BIZSUPPORT_PARTNERS_FILE": str(ROOT / "docs" / "partner-openapi.json"),  # any file
    }
    base_env = {k: v for k, v in os.environ.items() if k not in required}
    valid = config({**base_env, **required})
    assert valid.returncode == 0, valid.stderr

    for name in required:
        without = config({**base_env, **{k: v for k, v in required.items() if k != name}})
        assert without.returncode != 0, f"the stack must refuse to start without {name}"
        assert name in without.stderr


# ── metrics: Prometheus and Grafana ──────────────────────────────────────────────────────────


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path → host path (relative to the compose file) of the service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        parts = str(volume).split(":")
        if len(parts) >= 2 and parts[0].startswith("./"):
            mounts[parts[1]] = ROOT / parts[0]
    return mounts


def _load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{path} is not a YAML mapping"
    return loaded


def test_prometheus_scrapes_the_api_and_every_worker(services: dict[str, dict[str, Any]]) -> None:
    mounts = _bind_mounts(services["prometheus"])
    config_file = mounts["/etc/prometheus/prometheus.yml"]
    assert config_file.is_file(), f"{config_file} is missing"
    jobs = {job["job_name"]: job for job in _load_yaml(config_file)["scrape_configs"]}

    api = jobs["bizsupport-api"]
    assert api["static_configs"][0]["targets"] == ["api:8000"]
    assert api.get("metrics_path", "/metrics") == "/metrics"
    # /metrics is not public: Prometheus presents METRICS_TOKEN, handed over as a secret.
    assert api["authorization"]["credentials_file"] == "/run/secrets/metrics-token"
    assert "metrics-token" in services["prometheus"].get("secrets", [])
    api_env = services["api"]["environment"]
    assert re.fullmatch(r"\$\{METRICS_TOKEN:\?.+\}", str(api_env["METRICS_TOKEN"]))
    assert "METRICS_PUBLIC" not in api_env

    worker = jobs["bizsupport-worker"]["dns_sd_configs"][0]
    assert worker["names"] == ["worker"], "every replica, through the service's DNS name"
    worker_env = services["worker"]["environment"]
    assert str(worker["port"]) == str(worker_env["WORKER_METRICS_PORT"])
    assert worker_env["METRICS_BIND_ADDRESS"] == "0.0.0.0", "reachable from prometheus"


def test_grafana_is_provisioned_and_needs_a_password(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    grafana = services["grafana"]
    env = grafana["environment"]
    assert re.fullmatch(
        r"\$\{GRAFANA_ADMIN_PASSWORD:\?.+\}", str(env["GF_SECURITY_ADMIN_PASSWORD"])
    ), "the admin password comes from the environment, with no default"
    assert str(env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false"

    mounts = _bind_mounts(grafana)
    provisioning = mounts["/etc/grafana/provisioning"]
    (source,) = _load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"

    (provider,) = _load_yaml(provisioning / "dashboards" / "bizsupport.yml")["providers"]
    dashboards_dir = mounts[provider["options"]["path"]]
    files = sorted(dashboards_dir.glob("*.json"))
    assert files, f"no dashboard JSON in {dashboards_dir}"
    dashboard = json.loads(files[0].read_text(encoding="utf-8"))
    exprs = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    )
    for series in (
        "bizsupport_http_request_duration_seconds_bucket",
        "bizsupport_actions_total",
        "bizsupport_month_close_invoices_issued",
        "bizsupport_month_close_invoices_expected",
        "temporal_worker_task_slots_available",
        "temporal_workflow_task_schedule_to_start_latency_bucket",
    ):
        assert series in exprs, f"the dashboard does not chart {series}"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]

    declared = set((compose.get("secrets") or {}).keys())
    for name, svc in services.items():
        for secret in svc.get("secrets", []):
            assert secret in declared, f"{name} uses undeclared secret {secret!r}"
