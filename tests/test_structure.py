"""The code stays easy to carry on: the folders show the architecture (one package per concern, at
most 12 modules each, only `vfn.tracking` imports MLflow, every `vfn` command lives in
`vfn.commands`, the design names are defined once), no import cycles in `vfn` (imports inside
functions count), no private name imported from another module, every import inside a function
says why, no function body over 80 lines (the Ray worker's under 50), and every training loop runs
the one training step."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "vfn"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, tree: ast.Module, known: set[str], is_package: bool) -> list[tuple[str, list[str]]]:
    """(imported vfn module, names taken from it) for every import anywhere in the module."""
    out = []
    package = name if is_package else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.split(".")[0] == "vfn"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != "vfn":
                continue
            for alias in node.names:  # `from pkg import module` imports a module, not a name
                sub = f"{base}.{alias.name}"
                out.append((sub, []) if sub in known else (base, [alias.name]))
    return out


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    mods = modules()
    known = set(mods)
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for name, tree in mods.items():
        for target, names in imports_of(name, tree, known, name in packages):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name:
                graph[name].add(target)
            private += [f"{name} imports {target}.{n}" for n in names if n.startswith("_") and target != name]
    return graph, private


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def body_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]  # the docstring does not count
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def test_no_import_cycles_in_vfn():
    graph, _ = import_graph()
    # a package's __init__ importing its own modules is not a cycle worth reporting
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_names_imported_across_modules():
    _, private = import_graph()
    assert not private, private


def test_function_bodies_are_short():
    long = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and body_lines(node) > 80:
                long.append(f"{name}.{node.name}: {body_lines(node)} lines")
    assert not long, long
    worker = next(n for n in ast.walk(modules()["vfn.training.worker"])
                  if isinstance(n, ast.FunctionDef) and n.name == "train_loop_per_worker")
    assert body_lines(worker) < 50


@pytest.mark.parametrize("path", ["vfn/training/worker.py", "vfn/commands/bench/train.py",
                                  "vfn/training/in_memory.py", "scripts/gpu_check.py"])
def test_every_training_loop_runs_the_one_step(path):
    """The Ray worker, `vfn bench train`, the no-Ray harness of the learning tests and the init study
    (`in_memory`) and the GPU check all train through `vfn.training.step.TrainStep`, and none calls
    `.backward()` itself."""
    source = (REPO / path).read_text()
    tree = ast.parse(source)
    takes_step = any(isinstance(n, ast.ImportFrom) and n.module in ("vfn.training.step", "step")
                     and any(a.name == "TrainStep" for a in n.names) for n in ast.walk(tree))
    calls_step = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "TrainStep"
                     for n in ast.walk(tree))
    own_backward = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "backward"]
    assert takes_step and calls_step, f"{path} does not train with vfn.training.step.TrainStep"
    if path != "scripts/gpu_check.py":  # its model-only checks compare float32/bf16 gradients on their own
        assert not own_backward, f"{path} runs its own backward pass at lines {own_backward}"


@pytest.mark.parametrize("module, heavy", [
    # every worker process of a local job runs the set-up hook: nothing beyond ray
    ("vfn.runtime.worker_hooks", ("torch", "ray.train", "pydantic")),
    # Ray Train's controller, DatasetManager and SplitCoordinators unpickle the pipeline's task functions
    ("vfn.data.pipeline", ("torch", "torchvision")),
    # every Tune trial actor unpickles the sweep's trial function: a setting that fails validation
    # ends the trial before torch is imported
    ("vfn.tuning.trial", ("torch",)),
    # every decode task and its guard child: torch, but not torchvision (~1.5 s more of CPU each)
    ("vfn.data.clips", ("torchvision", "torch._dynamo")),
])
def test_modules_that_ray_processes_import_stay_light(module, heavy):
    """Dozens of Ray processes per run import these; torch + torchvision alone cost ~4.5 s of CPU
    in each (a fresh interpreter, as a Ray worker is)."""
    import subprocess
    import sys

    probe = f"import sys, {module}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "", f"importing {module} loads {out.stdout.strip()}"


PACKAGES = ("model", "config", "data", "training", "evaluation", "tuning", "tracking", "runtime", "commands")


def test_one_package_per_concern_and_none_too_big():
    """The tree is the architecture map of `vfn/__init__.py`: no module outside these packages but
    the command line, the shared error type and the version, and no folder over 12 modules."""
    top = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert top == {*PACKAGES, "__init__.py", "cli.py", "errors.py"}, sorted(top)
    big = {str(d.relative_to(REPO)): n for d in PACKAGE.rglob("*") if d.is_dir() and d.name != "__pycache__"
           and (n := len([f for f in d.glob("*.py") if f.name != "__init__.py"])) > 12}
    assert not big, big
    doc = ast.get_docstring(modules()["vfn"])
    assert all(f"  {p} " in doc for p in PACKAGES), "vfn/__init__.py's map names every package"


def imported_roots(tree: ast.Module) -> set[str]:
    roots = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            roots |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and not n.level and n.module:
            roots.add(n.module.split(".")[0])
    return roots


def test_only_the_tracking_package_talks_to_mlflow():
    outside = [m for m, tree in modules().items() if "mlflow" in imported_roots(tree)
               and not m.startswith("vfn.tracking")]
    assert not outside, outside


def test_the_model_never_imports_ray_mlflow_or_the_platform():
    allowed = {"vfn.model", "vfn.config.names", "vfn.errors"}
    bad = []
    graph, _ = import_graph()
    for name, tree in modules().items():
        if name.startswith("vfn.model"):
            bad += [f"{name}: {r}" for r in imported_roots(tree) & {"ray", "mlflow", "pydantic"}]
            bad += [f"{name} -> {t}" for t in graph[name] if not any(t == a or t.startswith(a + ".") for a in allowed)]
    assert not bad, bad


def test_design_names_are_defined_once():
    """`vfn.config.names` says what a config may choose; everyone else imports it from there."""
    defined = [m for m, tree in modules().items() for n in tree.body
               if isinstance(n, (ast.Assign, ast.AnnAssign))
               and any(isinstance(t, ast.Name) and t.id in ("DESIGNS", "MODELS", "COMPILE_MODES", "SCHEDULERS")
                       for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))]
    assert defined == ["vfn.config.names"] * 4, defined


def test_every_command_lives_in_the_commands_package():
    from vfn.cli import COMMANDS
    from vfn.commands.bench import BENCHMARKS

    routed = [m for m, _ in COMMANDS.values()] + [m for m, _ in BENCHMARKS.values()]
    assert all(m.startswith("vfn.commands.") for m in routed), routed
    for m in routed:
        assert (REPO / (m.replace(".", "/") + ".py")).exists() or (REPO / m.replace(".", "/")).is_dir(), m
    has_run = [m for m, tree in modules().items() if not m.startswith("vfn.commands") and m != "vfn.cli"
               and {"add_arguments", "run"} <= {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}]
    assert not has_run, f"command modules outside vfn.commands: {has_run}"


def uncommented_function_imports(source: str, name: str) -> list[str]:
    lines = source.splitlines()
    out = []
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(fn):
                if isinstance(n, (ast.Import, ast.ImportFrom)) and "#" not in lines[n.end_lineno - 1] \
                        and not lines[n.lineno - 2].strip().startswith("#"):
                    out.append(f"{name}:{n.lineno}")
    return out


def test_imports_inside_functions_say_why():
    """Outside `vfn.commands` (whose rule its package docstring states once), an import inside a
    function carries a comment (`# LAZY: ...`) on its line or the line above."""
    silent = [loc for p in sorted(PACKAGE.rglob("*.py")) if "commands" not in p.relative_to(PACKAGE).parts
              for loc in uncommented_function_imports(p.read_text(), str(p.relative_to(REPO)))]
    assert not silent, silent


def test_the_function_import_check_sees_a_silent_import():
    source = "def a():\n    # LAZY: why\n    import json\n\n\ndef b():\n    import json\n"
    assert uncommented_function_imports(source, "probe") == ["probe:7"]


def top_level_roots(tree: ast.Module) -> set[str]:
    return imported_roots(ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                                     type_ignores=[]))


def test_the_data_package_imports_ray_in_the_pipeline_only():
    """Reading, writing and decoding run without Ray. The Ray side is the Data pipeline (which
    imports `ray.data` in the driver's functions only: its task processes unpickle the module) and
    the corrupt-video ledger actor its tasks report to; `vfn.data.ingest` imports Ray only in the
    functions that pack on a cluster."""
    data = {m: tree for m, tree in modules().items() if m.startswith("vfn.data")}
    anywhere = sorted(m for m, tree in data.items() if "ray" in imported_roots(tree))
    at_top = sorted(m for m, tree in data.items() if "ray" in top_level_roots(tree))
    assert anywhere == ["vfn.data.ingest", "vfn.data.ledger", "vfn.data.pipeline"], anywhere
    assert at_top == ["vfn.data.ledger"], at_top
