"""The package's shape (issue 12): imports flow one way, with no cycles; library code never imports the CLI;
modules stay readable; commands that need no model import no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "curate"
MAX_LINES = 500  # "about 500": a module past this is doing two things


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The curate modules `name` imports (relative imports resolved, `from x import y` counts x.y if a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base
                for _ in range(node.level - 1):
                    parent = parent.rsplit(".", 1)[0]
                target = f"{parent}.{node.module}" if node.module else parent
            else:
                target = node.module or ""
            found |= {target} | {f"{target}.{a.name}" for a in node.names}
    return {t for t in found if t in known and t != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, p, set(mods)) for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10_000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read_correctly():
    g = graph()
    assert "curate.workspace" in g["curate.filters"]  # a relative import
    assert "curate.train.rm" in g["curate.commands.train"]  # `from ..train.rm import RMConfig`


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_library_code_never_imports_the_cli():
    cli = ("curate.commands", "curate.cli")
    bad = {m: sorted(t for t in ts if t.startswith(cli)) for m, ts in graph().items()
           if not m.startswith(cli) and any(t.startswith(cli) for t in ts)}
    assert bad == {}


def test_no_module_is_too_long():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_commands_that_need_no_model_import_no_torch(filled_ws):
    code = (
        "import sys\n"
        "from curate.cli import main\n"
        "from click import ClickException\n"
        f"for args in (['sql', 'select count(*) from pairs', '-w', {str(filled_ws)!r}], ['info', '-w', "
        f"{str(filled_ws)!r}], ['tables'], ['check', '-w', {str(filled_ws)!r}], ['filter', '--help'], "
        "['train', 'rm', '--help'], "
        f"['report', 'winrate', '-w', {str(filled_ws)!r}], ['eval', 'winrate', '--help']):\n"
        "    try:\n"
        "        main(args, standalone_mode=False)\n"
        "    except (SystemExit, ClickException):  # report winrate on a workspace with none says so\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'trl', 'openai') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
