"""The repository's layout (issue 28 §4): scripts share through mnr/, never through each other; mnr/ has no import
circle and never imports a script. Read from the code with ast, imports inside functions included, so a lazy
import cannot hide an edge. And the copies a benchmark keeps of train_mnr.py's step agree with it."""
import ast
import glob
import importlib.util
import os

import pytest
import torch

from conftest import ROOT

TUTORIAL_MODULES = {"data_prep", "pooling"}  # the tutorial's steps 1-3 and 5: modules, imported by everyone
# (script, the script it may import): the only pairs allowed, each with its reason
ALLOWED = {("train_bidirectional.py", "train_mnr"): "the same loop with another loss",
           ("benchmarks/profile_step.py", "train_mnr"): "it profiles train_mnr.py's own step functions"}


def scripts(root=ROOT):
    """Every runnable file a user starts: the root's .py files but the tutorial's modules, and benchmarks/*.py."""
    found = [os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "*.py"))]
    found = [p for p in found if p[:-3] not in TUTORIAL_MODULES]
    return sorted(found + [os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "benchmarks", "*.py"))])


def imported(path, root=ROOT):
    """The module names a file imports anywhere in it (`import a.b` -> a.b, `from a import b` -> a and a.b)."""
    with open(os.path.join(root, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def script_edges(root=ROOT):
    """(script, script it imports): a benchmark finds the root's scripts (it puts the root on sys.path) and its
    neighbours in benchmarks/ (its own folder is on the path)."""
    runnable = scripts(root)
    edges = set()
    for path in runnable:
        reachable = {p[:-3]: p for p in runnable if "/" not in p}
        if path.startswith("benchmarks/"):
            reachable |= {os.path.basename(p)[:-3]: p for p in runnable if p.startswith("benchmarks/")}
        edges |= {(path, name) for name in imported(path, root) if name in reachable and reachable[name] != path}
    return edges


def mnr_graph(root=ROOT, tutorial=False):
    """{module: the modules of this repository it imports}: mnr's modules, and with `tutorial` the tutorial's two,
    where a circle through the root would show too."""
    files = {f"mnr.{os.path.basename(p)[:-3]}": os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "mnr", "*.py"))
             if not p.endswith("__init__.py")}
    files |= {name: f"{name}.py" for name in TUTORIAL_MODULES} if tutorial else {}
    return {module: {name for name in imported(path, root) if name in files and name != module}
            for module, path in files.items()}


def cycle(graph):
    """One import circle of `graph` as a list of modules, or None."""
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, trail + [nxt])):
                return found
        state[node] = "done"
        return None

    return next((found for node in sorted(graph) if node not in state and (found := visit(node, [node]))), None)


def test_no_script_imports_another_script():
    assert "compare_runs.py" in scripts() and "benchmarks/gpu_check.py" in scripts()  # the walk finds them
    assert set(script_edges()) <= set(ALLOWED), sorted(set(script_edges()) - set(ALLOWED))


def test_mnr_has_no_import_circle_and_imports_no_script():
    graph = mnr_graph()
    assert cycle(graph) is None, " -> ".join(cycle(graph))
    root_names = {p[:-3] for p in scripts() if "/" not in p}
    for path in glob.glob(os.path.join(ROOT, "mnr", "*.py")) + [os.path.join(ROOT, f"{m}.py") for m in TUTORIAL_MODULES]:
        reached = imported(os.path.relpath(path, ROOT)) & root_names
        assert not reached, f"{os.path.relpath(path, ROOT)} imports the script(s) {sorted(reached)}"


def test_no_import_circle_through_the_tutorial_modules():
    graph = mnr_graph(tutorial=True)
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_the_checks_see_what_they_forbid(tmp_path):
    """On a tree laid out as before (a script importing a script, beir <-> tables), both checks speak."""
    (tmp_path / "mnr").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "evaluate_sts.py").write_text("def evaluate(): pass\n")
    (tmp_path / "evaluate_retrieval.py").write_text("from evaluate_sts import evaluate\n")
    (tmp_path / "benchmarks" / "bench_train.py").write_text("def run(): pass\n")
    (tmp_path / "benchmarks" / "bench_step.py").write_text("def main():\n    from bench_train import run\n")
    for name in TUTORIAL_MODULES:
        (tmp_path / f"{name}.py").write_text("")
    (tmp_path / "mnr" / "__init__.py").write_text("")
    (tmp_path / "mnr" / "tables.py").write_text("from mnr import beir\n")
    (tmp_path / "mnr" / "beir.py").write_text("def f():\n    from mnr.tables import load_table\n")
    assert script_edges(str(tmp_path)) == {("evaluate_retrieval.py", "evaluate_sts"),
                                           ("benchmarks/bench_step.py", "bench_train")}
    assert cycle(mnr_graph(str(tmp_path))) in (["mnr.beir", "mnr.tables", "mnr.beir"],
                                               ["mnr.tables", "mnr.beir", "mnr.tables"])


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(ROOT, "benchmarks", "gpu_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("negatives", [0, 1])
def test_gpu_check_times_train_mnr_s_step(negatives):
    """gpu_check.py reads train_mnr.py's recipe from its block and writes the plain step out (it imports no
    script): the same defaults, the same loss, the same AdamW groups as train_mnr.py's."""
    import train_mnr
    gpu_check = load_gpu_check()
    for name in ("LR", "MAX_GRAD_NORM", "SCALE", "SEED", "WARMUP_RATIO", "WEIGHT_DECAY"):
        assert getattr(gpu_check, name) == getattr(train_mnr, name)
    torch.manual_seed(0)
    anchor, positive, *rest = [torch.randn(6, 8, dtype=torch.float64) for _ in range(2 + negatives)]
    want = train_mnr.mnr_loss(anchor, positive, rest or None, scale=train_mnr.SCALE)
    assert torch.allclose(gpu_check.loss_of([anchor, positive, *rest]), want.float(), atol=1e-6)
    model = gpu_check.new_model("tiny", torch.device("cpu"))
    ours = gpu_check.new_optimizer(model, 4)[0]
    theirs = train_mnr.make_optimizer(model, train_mnr.LR, train_mnr.WEIGHT_DECAY)
    groups = [[(g["weight_decay"], g["lr"], sorted(map(id, g["params"]))) for g in o.param_groups] for o in (ours, theirs)]
    assert groups[0] == groups[1]
