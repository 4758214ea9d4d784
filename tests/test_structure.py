"""The house rules that keep the package readable, checked on the source: the floors and no import
circles (import-linter's contracts in pyproject.toml), functions of readable length, thin commands,
and function-local imports only where they say why."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "segapp"
MAX_FUNCTION_LINES = 100
MAX_COMMAND_LINES = 200
# The command-line fronts: argument parsing plus a call into the package.
COMMANDS = ("train", "predict", "evaluate", "prepare", "phantom", "publish", "tune_postprocessing", "dicomweb")


def _functions(path: Path) -> list[tuple[str, int, int]]:
    """(name, first line, length in lines) of every function in ``path``, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.name, node.lineno, node.end_lineno - node.lineno + 1)  # type: ignore[operator]
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_function_is_over_a_hundred_lines() -> None:
    long = [f"{path.relative_to(ROOT)}:{line} {name} ({length} lines)"
            for path in sorted(PACKAGE.rglob("*.py")) for name, line, length in _functions(path)
            if length > MAX_FUNCTION_LINES]
    assert not long, "split these functions:\n" + "\n".join(long)


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_are_thin_fronts(command: str) -> None:
    lines = len((PACKAGE / f"{command}.py").read_text(encoding="utf-8").splitlines())
    assert lines < MAX_COMMAND_LINES, f"segapp/{command}.py has {lines} lines: move its work into the package"


def _local_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of the imports inside functions, less those under ``if TYPE_CHECKING``."""
    source = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import):
                    found += [(inner.lineno, alias.name) for alias in inner.names]
                elif isinstance(inner, ast.ImportFrom):
                    found.append((inner.lineno, inner.module or ""))
    return sorted(set(found))


def _import_block(lines: list[str], index: int) -> list[str]:
    """The import at ``lines[index]``, the imports and blank lines just above it, and the line above
    those: where the reason for a group of function-local imports is written."""
    start = index
    while start > 0 and (not lines[start - 1].strip() or lines[start - 1].lstrip().startswith(("import ", "from "))):
        start -= 1
    return lines[max(0, start - 1): index + 1]


def test_function_local_imports_say_why() -> None:
    """A function-local import hides the structure, so each one states its reason (start-up time,
    an optional extra, an ordering constraint) in a comment on its line or in the lines just above."""
    silent = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for line, module in _local_imports(path):
            if not any("#" in text for text in _import_block(lines, line - 1)):
                silent.append(f"{path.relative_to(ROOT)}:{line} {module}")
    assert not silent, "import these at the top, or say why not:\n" + "\n".join(silent)


def test_the_layer_contracts_hold() -> None:
    """``lint-imports`` (import-linter) keeps every contract in pyproject.toml: lower floors never import
    higher ones, and no import circles between sibling modules."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if command is None:
        pytest.skip("import-linter is not installed (pip install -r requirements-dev.txt)")
    done = subprocess.run([command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
