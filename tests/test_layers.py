"""The layering of the README's "Layout": every module imports only from its own layer or below.

Each module of `src/orchestrator` is put in a layer by its package and name alone, so a new
module of a known package (an auth addition, a `schedules/` route module) is checked without
a word here; a new top-level package or module fails `test_every_module_has_a_layer` until it
is given a layer below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "orchestrator"

# Lowest first. A module may import from its own layer and from any layer before it.
LAYERS = ("ground", "db", "auth", "domains", "plumbing", "routes", "app", "cli")

# Top-level modules and packages, by name (a route module of any package is "routes").
PLACES = {
    "__init__": "ground",
    "config": "ground",
    "context": "ground",
    "errors": "ground",
    "faults": "ground",
    "representation": "ground",
    "text": "ground",
    "timestamps": "ground",
    "background": "ground",
    "db": "db",
    "auth": "auth",
    "jobs": "domains",
    "tasks": "domains",
    "schedules": "domains",
    "queues": "domains",
    "http": "plumbing",
    "observability": "plumbing",
    "changes": "routes",
    "console": "routes",
    "health": "routes",
    "services": "routes",
    "app": "app",
    "bootstrap": "app",
    "cli": "cli",
    "__main__": "cli",
}
# The SDK and worker runner stand apart: they speak only the public HTTP/WebSocket API.
APART = "client"


def is_route_module(module: str) -> bool:
    leaf = module.rsplit(".", 1)[-1]
    return leaf == "routes" or leaf.endswith("_routes")


def layer_of(module: str) -> str:
    """The layer of a dotted module name under `orchestrator`; KeyError when unclassified."""
    parts = module.split(".")
    assert parts[0] == PACKAGE, module
    top = parts[1] if len(parts) > 1 else "__init__"
    if top == APART:
        return APART
    if is_route_module(module):
        return "routes"
    return PLACES[top]


def module_name(path: Path) -> str:
    relative = path.relative_to(SRC).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def source_modules() -> list[tuple[str, Path]]:
    paths = sorted((SRC / PACKAGE).rglob("*.py"))
    return [(module_name(p), p) for p in paths if "migrations" not in p.parts]


def imported_modules(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of ours in the file, anywhere in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # `from orchestrator.db import feed` may name a submodule: check the deeper name.
            names = [f"{target}.{alias.name}" for alias in node.names]
            names = [n if _is_module(n) else target for n in names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] == PACKAGE]
    return found


def _is_module(name: str) -> bool:
    base = SRC.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def test_every_module_has_a_layer() -> None:
    unclassified = []
    for module, _path in source_modules():
        try:
            layer_of(module)
        except KeyError:
            unclassified.append(module)
    assert not unclassified, (
        f"give these modules a layer in tests/test_layers.py PLACES: {unclassified}"
    )


def upward_imports(module: str, path: Path) -> list[str]:
    """Each import of `module` (in the file at `path`) from a layer above its own."""
    own = layer_of(module)
    found = []
    for line, target in imported_modules(module, path):
        theirs = layer_of(target)
        if APART in (own, theirs):
            allowed = own in (theirs, "cli")  # `orchestrator worker` runs the SDK
        else:
            allowed = LAYERS.index(theirs) <= LAYERS.index(own)
        if not allowed:
            found.append(f"{path.name}:{line} {module} ({own}) imports {target} ({theirs})")
    return found


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = [line for module, path in source_modules() for line in upward_imports(module, path)]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_plumbing_knows_no_auth_and_no_domain() -> None:
    """`create_app` hands the rate limits, the access log and the OpenAPI document what they
    need of auth and of the routes; their modules import nothing of either."""
    below = LAYERS.index("db")
    found = [
        f"{path.name}:{line} {module} imports {target}"
        for module, path in source_modules()
        if layer_of(module) == "plumbing"
        for line, target in imported_modules(module, path)
        if layer_of(target) != "plumbing" and LAYERS.index(layer_of(target)) > below
    ]
    assert not found, "plumbing reaching into auth or a domain:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("orchestrator.auth.api_keys", "auth"),
        ("orchestrator.auth.key_routes", "routes"),
        ("orchestrator.schedules.queries", "domains"),
        ("orchestrator.schedules.routes", "routes"),
        ("orchestrator.queues.stats", "domains"),
        ("orchestrator.console.routes", "routes"),
        ("orchestrator.db.notifier", "db"),
    ],
)
def test_new_modules_of_known_packages_are_placed_by_their_name(module: str, layer: str) -> None:
    assert layer_of(module) == layer


def test_an_unknown_package_has_no_layer() -> None:
    with pytest.raises(KeyError):
        layer_of("orchestrator.reports.queries")


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """A query module that imported real time or the app would be reported."""
    bad = tmp_path / "queries.py"
    bad.write_text(
        "from orchestrator.db import Database\n"
        "from orchestrator.app import create_app\n"
        "def f() -> None:\n"
        "    import orchestrator.changes.hub\n"
    )
    found = upward_imports("orchestrator.jobs.queries", bad)
    assert [line.split(" imports ")[1] for line in found] == [
        "orchestrator.app (app)",
        "orchestrator.changes.hub (routes)",
    ]


TESTS = Path(__file__).resolve().parent


def imports_of_tests(path: Path) -> list[str]:
    """Each import, in the file at `path`, of a conftest or a test module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        leaves = {name.split(".")[-1] for name in names if name.split(".")[0] == "tests"}
        if any(leaf == "conftest" or leaf.startswith("test_") for leaf in leaves):
            found.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}")
    return found


def test_tests_take_their_helpers_from_support_modules() -> None:
    """Helpers live in `tests/support/` (or a package's own support module); a conftest only
    declares fixtures and a test module only tests, so neither is imported."""
    roots = (TESTS, TESTS.parent / "bench")
    paths = [path for root in roots for path in root.rglob("*.py")]
    found = [line for path in paths for line in imports_of_tests(path)]
    assert not found, "imports of a conftest or a test module:\n" + "\n".join(found)
