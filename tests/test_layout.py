"""The layout rules the README states: imports run one way, private modules stay private, rooms stay small.

`deployments` → `flows` → `nodes`: nothing imports a layer above it (nodes never import
Prefect), and no package imports another package's `_private` modules. Read from the
source with `ast`, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("nodes", "flows", "deployments")
# what each layer may not import (itself and below are fine)
FORBIDDEN = {
    "nodes": ("flows", "deployments", "prefect"),
    "flows": ("deployments",),
    "deployments": (),
}
MAX_CODE_LINES = 400
MAX_TEST_LINES = 500


def modules(*tops: str, root: Path = ROOT) -> list[Path]:
    return sorted(p for top in tops for p in (root / top).rglob("*.py") if ".venv" not in p.parts)


def imported(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """Every module name `path` imports, with its line (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def owner(path: Path, root: Path = ROOT) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts[:-1])


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_run_one_way(layer: str):
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: imports {name}"
        for path in modules(layer)
        for line, name in imported(path)
        if name.split(".")[0] in FORBIDDEN[layer]
    ]
    assert not wrong, "\n".join(wrong)


def private_imports(root: Path, tops: tuple[str, ...]) -> list[str]:
    """`path:line: imports pkg._mod` for each import of a `_private` module from outside its package."""
    known = {".".join(p.relative_to(root).with_suffix("").parts) for p in modules(*LAYERS, root=root)}
    wrong = []
    for path in modules(*tops, root=root):
        for line, name in imported(path, root):
            parts = name.split(".")
            private = next(
                (i for i, part in enumerate(parts) if part.startswith("_") and part != "__init__"), None
            )
            if private is None or ".".join(parts[: private + 1]) not in known:
                continue  # a private name inside a module, not a private module
            package = ".".join(parts[:private])
            line_text = f"{path.relative_to(root)}:{line}: imports {'.'.join(parts[: private + 1])}"
            if owner(path, root) != package and line_text not in wrong:
                wrong.append(line_text)
    return wrong


def test_no_package_imports_another_packages_private_modules():
    wrong = private_imports(ROOT, (*LAYERS, "tests", "bench"))
    assert not wrong, "\n".join(wrong)


def test_no_code_module_over_400_lines_and_no_test_module_over_500():
    sizes = {path: len(path.read_text().splitlines()) for path in modules(*LAYERS, "tests")}
    wrong = [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for path, lines in sizes.items()
        if lines > (MAX_TEST_LINES if path.is_relative_to(ROOT / "tests") else MAX_CODE_LINES)
    ]
    assert not wrong, "\n".join(wrong)


def test_every_code_module_says_what_it_is_for():
    missing = [
        str(path.relative_to(ROOT))
        for path in modules(*LAYERS)
        if not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert not missing, missing


def test_the_rules_see_a_violation(tmp_path: Path):
    """The checks above must be able to fail: a lazy upward import and a private import are found."""
    (tmp_path / "nodes" / "notify").mkdir(parents=True)
    (tmp_path / "flows").mkdir()
    (tmp_path / "nodes" / "notify" / "_http.py").write_text('"""probe."""\n')
    (tmp_path / "nodes" / "notify" / "slack.py").write_text(
        '"""probe."""\n\nfrom nodes.notify._http import x\n'
    )
    upward = tmp_path / "nodes" / "probe.py"
    upward.write_text('"""probe."""\n\n\ndef f():\n    from flows import pipeline\n    import prefect\n')
    (tmp_path / "flows" / "user.py").write_text('"""probe."""\n\nfrom nodes.notify._http import request\n')
    names = [name for _, name in imported(upward, tmp_path)]
    assert "flows.pipeline" in names and "prefect" in names
    assert private_imports(tmp_path, LAYERS) == ["flows/user.py:3: imports nodes.notify._http"]
