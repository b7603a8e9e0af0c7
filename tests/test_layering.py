"""ARCHITECTURE habit 4: the gateway core (router, providers, translations, jobs, mcp, cache) never imports Flask."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "deltallm"
CORE = sorted([p for folder in ("router", "providers", "translate", "jobs", "mcp", "cache")
               for p in (PACKAGE / folder).glob("*.py")] + [PACKAGE / "operations.py"])


@pytest.mark.parametrize("path", CORE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_core_module_does_not_import_flask(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
            if node.module.startswith("deltallm.api"):
                imported.add("deltallm.api")
    assert not imported & {"flask", "werkzeug", "deltallm.api"}


def test_core_modules_were_found():
    assert len(CORE) >= 10
