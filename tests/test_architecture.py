"""The house's floors (ARCHITECTURE.md): imports only go down, no two modules import each other, no
module imports another module's ``_private`` names. Read from the source with ``ast``, so a violation
fails here before it confuses anyone."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sampler", "analytic", "images", "toy", "evaluation", "figures")
# what each package may import from the project (its own floor and those below)
ALLOWED = {
    "sampler": set(),
    "analytic": {"sampler.schedules", "sampler.paths", "sampler.device"},  # device: the one device validator
    "images": {"sampler"},
    "toy": {"sampler", "analytic"},
    "evaluation": {"sampler", "analytic", "toy", "images"},
    "figures": {"sampler", "analytic", "toy", "images", "evaluation"},
}


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(name: str, path: Path):
    """(imported module, imported names) of one module, relative imports resolved."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod, tuple(a.name for a in node.names)


GRAPH = {name: list(_imports(name, path)) for name, path in _modules()}


# Entry points that sit beside their package for discoverability (``python -m images.run``) and draw with the
# figure modules, as paper_plots.py does; the library modules of the package never import upwards.
ENTRY_POINTS = {"images.run": {"figures"}, "evaluation.claims.__main__": {"figures"},
                "evaluation.inverse.__main__": {"figures"}}


def _project(mod: str) -> bool:
    return mod.split(".")[0] in PACKAGES


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_only_go_down_and_no_private_names(name):
    pkg = name.split(".")[0]
    for mod, names in GRAPH[name]:
        if not _project(mod) or mod.split(".")[0] == pkg:
            if mod.split(".")[0] == pkg and mod != name:
                private = [n for n in names if n.startswith("_") and n not in ("__version__",)]
                assert not private, f"{name} imports private names {private} from {mod}"
            continue
        allowed = ALLOWED[pkg] | ENTRY_POINTS.get(name, set())
        assert any(mod == a or mod.startswith(a + ".") for a in allowed), \
            f"{name} imports {mod}: {pkg} may only import {sorted(ALLOWED[pkg]) or 'nothing of the project'}"
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{name} imports private names {private} from {mod}"


def test_no_import_cycles_between_modules():
    edges = {n: {m for m, _ in deps if m in GRAPH and m != n} for n, deps in GRAPH.items()}
    # a package's __init__ re-exports its modules; cycles through it are not module cycles
    edges = {n: {m for m in ms if not (n.count(".") >= 1 and m == n.split(".")[0])} for n, ms in edges.items()}
    seen, stack = {}, []

    def visit(n):
        seen[n] = "open"
        stack.append(n)
        for m in edges[n]:
            if seen.get(m) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            if m not in seen:
                visit(m)
        stack.pop()
        seen[n] = "done"

    for n in sorted(edges):
        if n not in seen:
            visit(n)
