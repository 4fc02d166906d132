"""The import graph of diffkit has no cycles, counting the imports deferred into
functions (only ``if TYPE_CHECKING:`` blocks are left out: they never run)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "diffkit"


def _graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            if comp:
                found.append(sorted([v, *comp]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_python_dash_m_diffkit():
    out = subprocess.run([sys.executable, "-m", "diffkit", "--version"], capture_output=True,
                         text=True, timeout=120, check=True)  # fmt: skip
    assert out.stdout.startswith("diffkit ")


COMMANDS = {"train", "sample", "eval", "reflow", "cache_bench", "runs", "export"}


def test_command_modules_do_not_import_each_other():
    """What two commands share lives in cli/shared.py or cli/options.py; a command module
    imports no other command module, and nothing imports a private name across modules."""
    graph = _graph()
    for name in (f"diffkit.cli.{c}" for c in COMMANDS):
        assert not graph[name] & {f"diffkit.cli.{c}" for c in COMMANDS}, name
    for path in (PACKAGE / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("diffkit"):
                private = [a.name for a in node.names if a.name.startswith("_")
                           and not a.name.startswith("__")]  # fmt: skip
                assert not private, f"{path.name} imports {private} from {node.module}"


def test_the_cli_starts_without_torch():
    """`diffkit --help`, `--version`, `runs` and every command's `--help` must not pay for
    importing torch (seconds, hundreds of MB): the app and its command modules import it
    only inside the commands that compute."""
    code = (
        "import sys; from typer.testing import CliRunner; from diffkit.cli.app import app; "
        "r = CliRunner().invoke(app, ['train', 'controlnet', '--help']); "
        "assert r.exit_code == 0, r.output; "
        # pydantic too: its import is about 0.2 s of a 0.4 s --help
        "print('torch' in sys.modules, 'pydantic' in sys.modules); "
        "r = CliRunner().invoke(app, ['runs', '--runs-dir', 'no-such-dir']); "
        "assert r.exit_code == 0, r.output; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"], out.stdout + out.stderr
