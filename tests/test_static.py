"""The layer rules of spec/design.md, the types, and no private names across packages.

- the import-linter contracts of ``.importlinter`` (``lint-imports``);
- no module imports a private name (``_x``) or a private module from another package;
- no function imports marginsim (every import of the package is at the top of a module);
- mypy (the pydantic plugin, ``[tool.mypy]`` of pyproject.toml; numpy's own plugin is deprecated
  since numpy 2.3 and its stubs need none) finds no error in marginsim/.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "marginsim"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(module: str, path: Path) -> str:
    """The package a module belongs to: itself for a package's __init__, else its parent."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _package_of(module, path).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private_imports() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        own = _package_of(module, path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(module, path, node)
            if not source.startswith("marginsim"):
                continue
            source_pkg = source if (ROOT / Path(*source.split("."))).is_dir() else source.rpartition(".")[0]
            if source_pkg == own:  # within a package, private names are its own business
                continue
            private_module = any(p.startswith("_") for p in source.split(".")[1:])
            names = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            if private_module:
                found.append(f"{module}:{node.lineno} imports from the private module {source}")
            elif names:
                found.append(f"{module}:{node.lineno} imports {', '.join(names)} from {source}")
    return found


def test_no_private_name_is_imported_across_packages():
    assert _private_imports() == []


def _imports_inside_functions() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom):
                    source = _resolve(module, path, node)
                elif isinstance(node, ast.Import):
                    source = node.names[0].name
                else:
                    continue
                if source.split(".")[0] == "marginsim":
                    found.append(f"{module}:{node.lineno} imports {source} inside {fn.name}()")
    return found


def test_no_import_inside_a_function():
    """Imports of marginsim sit at the top of a module: none hides a cycle or a layer rule inside a
    function (heavy third-party packages, such as the notebook machinery, may be imported when used)."""
    assert _imports_inside_functions() == []


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install the test extra (pip install -e '.[test]')")
    return found


def test_the_layer_contracts_hold():
    out = subprocess.run(
        [_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "broken" not in out.stdout.split("Contracts:")[-1].replace("0 broken", "")


def test_mypy_finds_no_error():
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "marginsim"], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
