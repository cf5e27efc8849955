"""The package's imports run one way: no cycles, no import up the layer order.

Every module of ``hierlm`` is parsed (not imported) and every import of a
hierlm module is collected: at the top of the file, under ``if
TYPE_CHECKING:``, and inside functions. Modules are grouped into units (a
subpackage such as ``hierlm.lmm``, or a top-level module such as
``hierlm.model``) and the units into layers, lowest first (``LAYERS``). An
import may go to the importer's own unit or to a unit of a lower layer; two
units of one layer (the engines ``hierlm.lmm`` and ``hierlm.bayes``) are peers
and may not import each other. Independently of the layers, the module graph
has no cycles.

Function-level imports count like the others, so an import moved into a
function to dodge a cycle still fails the cycle test; what stays inside
functions keeps heavy third-party packages (PyMC, ArviZ, matplotlib, nutpie)
out of ``import hierlm`` and out of fits that do not need them, which the last
tests check.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hierlm"

# Lowest first. results sits below the engines: the shared result methods and the
# draws container are used by both engines, and results code reaches engine-specific
# behaviour through the methods the result classes implement, never by importing them.
LAYERS: list[tuple[str, ...]] = [
    ("hierlm.errors",),
    ("hierlm.io_validation", "hierlm.options"),
    ("hierlm.core",),
    ("hierlm.datasets", "hierlm.formula", "hierlm.families"),
    ("hierlm.design",),
    ("hierlm.sources",),
    ("hierlm.results",),
    # The Bayesian engine stands on the ML/REML factorisation: one Gaussian likelihood
    # (hierlm.lmm.likelihood) serves ML/REML, MAP and the marginal NUTS formulation.
    ("hierlm.lmm",),
    ("hierlm.glmm",),  # GLMM ML (PIRLS, Laplace, AGQ); below bayes, which may use its PIRLS
    ("hierlm.bayes",),
    ("hierlm.model",),
    ("hierlm.plots", "hierlm.selection"),
    ("hierlm.io",),
    ("hierlm.cards", "hierlm.report_tables"),
    ("hierlm.report",),
    ("hierlm.cli",),
    ("hierlm",),
]

def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The hierlm module an imported name lives in (``hierlm.lmm.fit.fit_lmm`` -> ``hierlm.lmm.fit``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _package_of(module: str) -> str:
    path = MODULES[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str) -> list[tuple[str, int, bool]]:
    """Every hierlm module ``module`` imports: (target, line, inside a function)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative import
                    package = _package_of(module).split(".")
                    base = ".".join(package[: len(package) - child.level + 1] + ([base] if base else []))
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    names.append(full if full in MODULES else base)
            for name in names:
                target = _resolve(name) if name.startswith("hierlm") else None
                if target is not None and target != module:
                    found.append((target, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _layer_of() -> dict[str, int]:
    return {unit: level for level, units in enumerate(LAYERS) for unit in units}


def test_every_unit_has_a_layer():
    layers = _layer_of()
    missing = sorted({_unit(m) for m in MODULES} - set(layers))
    assert not missing, f"add these to LAYERS in tests/test_layers.py: {missing}"


def _cycles(graph: dict[str, list[tuple[str, int, bool]]] | None = None) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph = GRAPH if graph is None else graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in {target for target, _, _ in graph[v]}:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in graph:
        if v not in index:
            connect(v)
    return components


def test_no_import_cycles():
    cycles = _cycles()
    detail = []
    for component in cycles:
        members = set(component)
        edges = sorted({f"{src}:{line} -> {dst}" for src in component for dst, line, _ in GRAPH[src]
                        if dst in members})
        detail.append("\n    ".join(edges))
    assert not cycles, "import cycles:\n    " + "\n\n    ".join(detail)


def test_imports_point_down_the_layers():
    layers = _layer_of()
    wrong = []
    for src, targets in GRAPH.items():
        for dst, line, _ in targets:
            a, b = _unit(src), _unit(dst)
            if a == b or a not in layers or b not in layers:
                continue
            if layers[b] >= layers[a]:
                kind = "a peer" if layers[b] == layers[a] else "a higher layer"
                wrong.append(f"{MODULES[src].relative_to(PACKAGE.parent)}:{line}: {src} imports "
                             f"{dst} ({kind})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_a_cycle_through_a_function_level_import_is_found():
    graph = {"a": [("b", 1, False)], "b": [("c", 3, True)], "c": [("a", 5, False)], "d": [("a", 1, False)]}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_graph_sees_both_kinds_of_import():
    """The walker finds top-level and function-level imports (so the tests above can fail)."""
    kinds = {inside for targets in GRAPH.values() for _, _, inside in targets}
    assert kinds == {True, False}
    assert ("hierlm.design.blocks", False) in {(dst, inside) for dst, _, inside in GRAPH["hierlm.lmm.fit"]}
    assert len(MODULES) > 50


def _imported_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    return set(out.stdout.split())


def test_import_hierlm_stays_light():
    loaded = _imported_after("import hierlm")
    heavy = {"pymc", "pytensor", "arviz_base", "arviz_stats", "matplotlib", "nutpie", "numpyro", "jax"}
    assert not loaded & heavy, sorted(loaded & heavy)
    assert "hierlm.lmm" not in loaded and "hierlm.bayes" not in loaded


@pytest.mark.slow
def test_an_reml_fit_and_its_tables_need_no_bayesian_stack():
    code = ("import hierlm as hl\n"
            "fit = hl.Model('Reaction ~ Days + (Days | Subject)', hl.datasets.load('sleepstudy')).fit()\n"
            "fit.fixef(); fit.varcorr(); fit.ranef(); fit.coef(); fit.predict(); fit.icc(); repr(fit)")
    loaded = _imported_after(code)
    heavy = {"pymc", "pytensor", "arviz_base", "arviz_stats", "matplotlib", "nutpie", "numpyro", "jax"}
    assert not loaded & heavy, sorted(loaded & heavy)
