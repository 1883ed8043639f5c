"""The package's layers: the engine is a library that knows nothing of the daemon, and
nothing below the command line imports it. Read from the source, so a lazy import inside
a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[1] / "nstd"
#: The library: usable without the daemon (the engine and what it stands on).
LIBRARY = ("nstd.engine", "nstd.errors", "nstd.atomic", "nstd.untrusted", "nstd.images", "nstd.params",
           "nstd.metrics")
#: Jobs in the inbox, claims and the outbox: below the daemon's roles. The daemon's config
#: stays at the top of the package (every layer above the library reads it) but keeps to this rule.
SPOOL = ("nstd.spool", "nstd.config")
#: The daemon's roles and its pages.
DAEMON = ("nstd.daemon", "nstd.web", "nstd.video.daemon")
#: The command line, on top of everything.
FRONT = ("nstd.cli", "nstd.__main__", "nstd.video.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str) -> set[str]:
    """Every nstd module ``source`` imports, anywhere in it (``from nstd import x`` is nstd.x)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("nstd"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("nstd"):
            out.update(f"{node.module}.{a.name}" if node.module == "nstd" else node.module for a in node.names)
    return out


def within(module: str, layer: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in layer)


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that reaches up a layer."""
    bad = []
    for module, names in graph.items():
        for name in names:
            if within(module, LIBRARY) and not within(name, LIBRARY):
                bad.append(f"{module} (library) imports {name}")
            elif within(module, SPOOL) and within(name, DAEMON + FRONT):
                bad.append(f"{module} (spool) imports {name}")
            elif not within(module, FRONT) and within(name, FRONT):
                bad.append(f"{module} imports the command line's {name}")
    return sorted(bad)


def package_graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_imports_a_layer_above_its_own():
    graph = package_graph()
    assert "nstd.engine.stylize" in graph and "nstd.daemon.service" in graph  # the layers name real modules
    assert violations(graph) == []


@pytest.mark.parametrize("module, line", [
    ("nstd.engine.job", "from nstd.daemon import worker"),
    ("nstd.engine.steps", "import nstd.daemon.scanner"),
    ("nstd.params", "from nstd.config import Config"),
    ("nstd.spool.jobs", "from nstd.daemon.status import StatusBoard"),
    ("nstd.daemon.runner", "from nstd.cli import main"),
])
def test_an_import_up_a_layer_is_found(module, line):
    graph = package_graph()
    graph[module] = graph[module] | imports(line)
    assert violations(graph), f"{line!r} in {module} was not caught"
