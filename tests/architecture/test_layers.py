"""The house rules of the layout (docs/architecture.md): imports only run downward, and no two
files import each other, directly or round a longer loop.

    domain, statemachines, settings   pure rules and configuration
    store, partners                    PostgreSQL and the partner gateway
    activities                         effects, each idempotent
    workflows                          decisions and timers
    services                           checks, then workflow updates (what API, console, CLI call)
    starter                            Temporal client and worker wiring, the operator CLI
    api                                HTTP API and console
    devstack                           make run: embedded servers, sandbox, demo data
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS: list[set[str]] = [
    {"domain", "statemachines", "settings"},
    {"store", "partners"},
    {"activities"},
    {"workflows"},
    {"services"},
    {"starter"},
    {"api"},
    {"devstack"},
]
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def _modules() -> dict[str, Path]:
    found = {}
    for package in LEVEL:
        single = ROOT / f"{package}.py"
        if single.exists():
            found[package] = single
            continue
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every project module the file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n in MODULES}


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _level(module: str) -> int:
    return LEVEL[module.split(".")[0]]


def test_every_package_has_a_layer() -> None:
    assert MODULES, "no modules found"
    top = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert top - {"tests", "bench", "catalog"} <= set(LEVEL), "a new package needs a layer"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_downward(module: str) -> None:
    upward = sorted(i for i in GRAPH[module] if _level(i) > _level(module))
    assert not upward, f"{module} (layer {_level(module)}) imports upward: {upward}"


# The console and the bearer-token check read no table themselves: who a caller is, their session
# and the pages' data come from the services (services/directory.py, services/sessions.py), the
# layer the API and the CLI share (docs/architecture.md).
THROUGH_SERVICES = sorted(m for m in MODULES if m == "api.auth" or m.startswith("api.console"))


@pytest.mark.parametrize("module", THROUGH_SERVICES)
def test_console_and_auth_go_through_the_services(module: str) -> None:
    assert THROUGH_SERVICES, "no console modules found"
    store = sorted(i for i in GRAPH[module] if i.split(".")[0] == "store")
    assert not store, f"{module} reads store/ directly: {store}; call a service instead"


def test_no_import_loops_between_files() -> None:
    loops: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if target == module or _package_of(target) == module:
                continue  # a package importing its own submodule is not a loop between files
            if state.get(target) == 1:
                loops.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not loops, f"import loops: {loops}"


def _package_of(module: str) -> str:
    return module.rsplit(".", 1)[0] if "." in module else module


def test_every_package_is_installed_by_pyproject() -> None:
    """`pip install .` (the image) ships exactly the packages the code imports."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
            "packages"
        ]
    )
    packages = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in LEVEL
        if (ROOT / top).is_dir()
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert packages <= listed, f"missing from pyproject.toml: {sorted(packages - listed)}"
