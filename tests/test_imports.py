"""Package structure: no import circles, torch only where a solver is used."""

import ast
import subprocess
import sys
from pathlib import Path

import mne_mmnet

_ROOT = Path(mne_mmnet.__file__).parent


def _module_name(path):
    parts = list(path.relative_to(_ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph():
    """Module -> package modules it imports anywhere (deferred imports too)."""
    modules = {_module_name(f): f for f in _ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name.split(".")
        if path.name != "__init__.py":
            package = package[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    targets.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
        deps = set()
        for target in targets:  # importing a.b.c runs a and a.b first
            bits = target.split(".")
            deps.update(
                ".".join(bits[:k])
                for k in range(1, len(bits) + 1)
                if ".".join(bits[:k]) in modules
            )
        own = name.split(".")
        deps -= {".".join(own[:k]) for k in range(1, len(own) + 1)}
        graph[name] = deps
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on_stack.discard(comp[-1])
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    graph = _import_graph()
    assert "mne_mmnet.solver.bounds" in graph  # the walk saw the package
    assert "mne_mmnet.solver" in graph["mne_mmnet.networks.mmnet"]
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_torch_only_when_a_solver_is_used(tmp_path):
    """Forward, metrics, simulating and simulation files need no torch."""
    code = (
        "import sys, numpy as np, mne_mmnet\n"
        "fwd = mne_mmnet.read_template_forward(verbose=False)\n"
        "from mne_mmnet import metrics\n"
        "x = np.zeros((1, 994, 4)); x[0, 3] = 1\n"
        "metrics.psnr(x + 0.1, x)\n"
        "from mne_mmnet import simulation\n"
        "sim = simulation.simulate_broad(2, seed=0, verbose=False)\n"
        "simulation.simulate_nmm(1, seed=0, verbose=False)\n"
        "simulation.save_simulation(sim, sys.argv[1], verbose=False)\n"
        "simulation.load_simulation(sys.argv[1], verbose=False)\n"
        "assert 'torch' not in sys.modules, 'torch imported too early'\n"
        "assert simulation.SimulationDataset is simulation.io.SimulationDataset\n"
        "from mne_mmnet import solve_mm\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "sim")], check=True,
                   timeout=120)  # fmt: skip
