"""Reproducible installs (security issue, item 13): exact versions with sha256 hashes for the
runtime (the image) and for development (`make install`), a pinned base image, `make lock`."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*\\?$")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}\b")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: Path) -> dict[str, str]:
    """name → version; every requirement exact and followed by at least one sha256 hash."""
    found: dict[str, str] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text(encoding="utf-8"))
    for entry in entries:
        first = entry.splitlines()[0]
        if first.startswith("#") or not first.strip():
            continue
        match = PIN.match(first)
        assert match, f"{lock.name}: not an exact pin: {first!r}"
        assert HASH.search(entry), f"{lock.name}: {first!r} has no sha256 hash"
        found[canonical(match.group(1))] = match.group(2)
    return found


def requirement_name(requirement: str) -> str:
    return canonical(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_locks_pin_every_dependency_with_hashes(project: dict) -> None:
    runtime, dev = pins(LOCK), pins(DEV_LOCK)
    for requirement in project["project"]["dependencies"]:
        assert requirement_name(requirement) in runtime, requirement
    for requirement in project["project"]["optional-dependencies"]["dev"]:
        assert requirement_name(requirement) in dev, requirement
    for requirement in project["build-system"]["requires"]:  # nothing unpinned at build time
        assert requirement_name(requirement) in runtime and requirement_name(requirement) in dev
    # development runs the very versions the image runs
    for name, version in runtime.items():
        assert dev.get(name) == version, f"{name}: {version} in the image, {dev.get(name)} in dev"
    for text in (LOCK.read_text(), DEV_LOCK.read_text()):
        assert "make lock" in text, "the lock's header should say how to refresh it"
        assert "--index-url" not in text and "--extra-index-url" not in text


def test_this_environment_was_installed_from_the_dev_lock() -> None:
    for name, version in pins(DEV_LOCK).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{name} from the dev lock is not installed")
        assert installed == version, f"{name}: {installed} installed, {version} locked"


def test_make_install_uses_the_dev_lock_and_make_lock_refreshes_both() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    variables = dict(re.findall(r"^(\w+)\s*:=\s*(\S+)\s*$", makefile, re.MULTILINE))
    assert variables.get("LOCK") == LOCK.name and variables.get("DEV_LOCK") == DEV_LOCK.name
    rule = re.search(r"^\$\(VENV\)/\.installed:([^\n]*)\n((?:\t[^\n]*\n)+)", makefile, re.M)
    assert rule, "no $(VENV)/.installed rule"
    prerequisites, recipe = rule.group(1).split(), rule.group(2)
    assert "pyproject.toml" in prerequisites and "$(DEV_LOCK)" in prerequisites
    installs = [line for line in recipe.splitlines() if "pip install" in line]
    assert installs and "--require-hashes -r $(DEV_LOCK)" in installs[0], installs
    for line in installs[1:]:
        assert "--no-deps" in line, f"an install outside the lock: {line.strip()}"
    lock_rule = re.search(r"^lock:[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.M)
    assert lock_rule, "no `make lock`"
    assert "--generate-hashes" in makefile
    assert "-o $(LOCK)" in lock_rule.group(1) and "-o $(DEV_LOCK)" in lock_rule.group(1)


def test_dockerfile_pins_its_base_by_digest_and_installs_from_the_lock() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert re.fullmatch(r"FROM python:3\.11-slim@sha256:[0-9a-f]{64}( AS \w+)?", lines[0])
    text = "\n".join(lines)
    assert "pip install --require-hashes -r requirements.lock" in text
    for command in re.findall(r"pip install[^\n&]*", text):
        assert "--require-hashes" in command or "--no-deps" in command, command
    assert f"COPY {LOCK.name}" in text
