"""model/ imports numpy and the standard library only (DESIGN.md invariant 6)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parents[2] / "model"
ALLOWED_THIRD_PARTY = {"numpy"}
FORBIDDEN_STDLIB = {
    "asyncio",
    "socket",
    "ssl",
    "http",
    "urllib",
    "subprocess",
    "selectors",
    "multiprocessing",
    "threading",
    "sqlite3",
    "shutil",
    "tempfile",
    "logging.handlers",
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module)
    return roots


def test_model_imports_only_numpy_and_the_standard_library() -> None:
    files = sorted(MODEL_DIR.glob("*.py"))
    assert files, "model/ has no modules"
    offenders = []
    for path in files:
        for name in imported_roots(path):
            root = name.split(".")[0]
            if name == "__future__":
                continue
            if name.startswith("tickcast.model"):
                continue
            if root in ALLOWED_THIRD_PARTY:
                continue
            if root in sys.stdlib_module_names and root not in FORBIDDEN_STDLIB:
                continue
            offenders.append(f"{path.name}: {name}")
    assert not offenders, f"model/ imports outside numpy and the pure stdlib: {offenders}"


def test_the_import_scan_catches_an_io_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import redis\nfrom asyncio import sleep\n")
    assert {"redis", "asyncio"} <= imported_roots(bad)
