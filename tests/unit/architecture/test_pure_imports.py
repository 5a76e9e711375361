"""The pure packages (analytics, config) import no asyncio, sqlite3, network or UI library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pairwatch.analytics
import pairwatch.config

FORBIDDEN = {
    "asyncio",
    "sqlite3",
    "socket",
    "ssl",
    "websockets",
    "aiomqtt",
    "paho",
    "telegram",
    "aiohttp",
    "httpx",
    "requests",
    "panel",
    "bokeh",
    "tornado",
    "pairwatch.daemon",
    "pairwatch.notifiers",
    "pairwatch.web",
}


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def is_forbidden(module: str) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in FORBIDDEN)


@pytest.mark.parametrize("package", [pairwatch.analytics, pairwatch.config])
def test_pure_packages_import_no_io_or_ui_library(package: object) -> None:
    root = Path(package.__file__).parent  # type: ignore[attr-defined]
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 5
    offending = {
        f"{path.name}: {module}"
        for path in files
        for module in imported_modules(path)
        if is_forbidden(module)
    }
    assert offending == set()


def test_the_scan_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom asyncio import sleep\nimport sqlite3 as db\n")
    assert {module for module in imported_modules(sample) if is_forbidden(module)} == {
        "asyncio",
        "sqlite3",
    }
