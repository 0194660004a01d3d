"""The packages' allowed imports (docs/architecture.md), read from every module's
``import`` statements with ``ast``, so a forbidden edge cannot creep back in.

Only the project's own ``wma_*`` packages are checked; a lazy ``importlib`` by
name (``wma_cli.main``'s registrars) is not an edge: the CLI may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {
    "wma_core": REPO / "services" / "core" / "wma_core",
    "wma_wire": REPO / "services" / "wire" / "wma_wire",
    "wma_model_server": REPO / "services" / "model-server" / "wma_model_server",
    "wma_fusion": REPO / "services" / "fusion" / "wma_fusion",
    "wma_local": REPO / "services" / "local" / "wma_local",
    "wma_calibrators": REPO / "calibrators" / "wma_calibrators",
    "wma_cli": REPO / "services" / "cli" / "wma_cli",
}
# What each package may import besides itself. Serving (the two services) imports
# only the core and the wire package, never each other and never the tools.
ALLOWED: dict[str, set[str]] = {
    "wma_core": set(),
    "wma_wire": set(),
    "wma_model_server": {"wma_wire"},
    "wma_fusion": {"wma_core", "wma_wire"},
    # the tools: the calibrator tool (and the rollout report) reads the gateway's
    # records and replays through its client SDK; the local stack runs both
    # services as `wma` child processes
    "wma_calibrators": {"wma_core", "wma_wire", "wma_fusion"},
    "wma_local": {"wma_core", "wma_wire", "wma_fusion", "wma_model_server", "wma_cli"},
    "wma_cli": set(PACKAGES) - {"wma_cli"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level ``wma_*`` packages a module imports (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {n.split(".")[0] for n in names if n.startswith("wma_")}
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_package_imports_only_what_it_is_allowed_to(package: str) -> None:
    modules = sorted(PACKAGES[package].rglob("*.py"))
    assert modules, f"{package}: no modules under {PACKAGES[package]}"
    wrong = [
        f"{path.relative_to(REPO)} imports {other}"
        for path in modules
        for other in sorted(imported_packages(path) - {package} - ALLOWED[package])
    ]
    assert not wrong, "\n".join(wrong)


def test_every_package_of_the_project_is_checked() -> None:
    found = {p.name for p in REPO.glob("services/*/wma_*")} | {
        p.name for p in REPO.glob("calibrators/wma_*")
    }
    assert found == set(PACKAGES)


def test_the_gateway_and_the_model_server_never_import_each_other() -> None:
    # the rule the others exist for, spelled out
    assert "wma_model_server" not in ALLOWED["wma_fusion"]
    assert "wma_fusion" not in ALLOWED["wma_model_server"]
    for serving in ("wma_fusion", "wma_model_server"):
        assert not ALLOWED[serving] & {"wma_cli", "wma_calibrators", "wma_local"}
