"""fnnet's modules stand on floors: a module imports only from its own floor or below,
and no import chain comes back to where it started (no cycle). Read with ``ast``, so
imports inside functions count too. DESIGN.md ("Module map") describes the floors.

A new module must be given a floor here: the test fails until it has one.
"""

import ast
import pathlib
import sys

import fnnet

ROOT = pathlib.Path(fnnet.__file__).parent

# floor: modules ("fnnet.optim.*": the package and everything in it)
FLOORS = {
    0: ["fnnet._checks", "fnnet._named", "fnnet.checkpoint", "fnnet.initializers",
        "fnnet.runlog", "fnnet.shapes", "fnnet.sqnorm", "fnnet.static", "fnnet.structure",
        "fnnet.distributed", "fnnet.partitioning", "fnnet.tensor_parallel",
        "fnnet.sharded_checkpoint", "fnnet.sharding"],          # utilities, devices
    1: ["fnnet.optim.*"],                                       # optimizers
    2: ["fnnet.core"],                                          # the Layer/Loss contract
    3: ["fnnet.state", "fnnet.walk"],                           # through a layer's record
    4: ["fnnet.combinators", "fnnet.tie", "fnnet.mixed_precision", "fnnet.layers.*",
        "fnnet.losses", "fnnet.regularizers", "fnnet.make_layer"],  # building blocks
    5: ["fnnet.blocks", "fnnet.models.*", "fnnet.grad"],        # composites, value_and_grad
    6: ["fnnet.summary", "fnnet.per_example", "fnnet.compare", "fnnet.second_order",
        "fnnet.gradcheck", "fnnet.rules", "fnnet.diagnostics", "fnnet.debug", "fnnet.dp",
        "fnnet.plotting"],                                      # tools over models
    7: ["fnnet.metrics", "fnnet.validation", "fnnet.data_checks", "fnnet.step", "fnnet.loop",
        "fnnet.inference", "fnnet.train", "fnnet.sweep"],       # training and inference
    8: ["fnnet", "fnnet.cli", "fnnet.launch", "fnnet.demos.*"],  # the package, the apps
}

# Known edges that close a cycle or go up, each with the issue that removes it (none now;
# metrics <-> train was one until issue 21 moved evaluate/predict to inference.py).
ALLOWED = {}


def _module(path: pathlib.Path) -> str:
    parts = ("fnnet",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(name: str) -> bool:
    rel = pathlib.Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def _imports(path: pathlib.Path) -> set:
    module = _module(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "fnnet"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "fnnet":
                continue
            for alias in node.names:          # `from . import state`: a submodule
                sub = f"{target}.{alias.name}"
                out.add(sub if _exists(sub) else target)
    return out - {module}


def _graph() -> dict:
    return {_module(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def _floor(module: str):
    for floor, names in FLOORS.items():
        for name in names:
            if module == name or (name.endswith(".*") and
                                  (module == name[:-2] or module.startswith(name[:-1]))):
                return floor
    return None


def test_every_module_has_a_floor():
    missing = sorted(m for m in _graph() if _floor(m) is None)
    assert not missing, f"give these modules a floor in tests/test_imports.py: {missing}"


def test_no_upward_imports():
    up = [f"{m} (floor {_floor(m)}) imports {t} (floor {_floor(t)})"
          for m, targets in _graph().items() for t in sorted(targets)
          if (m, t) not in ALLOWED and (_floor(t) or 0) > (_floor(m) or 0)]
    assert not up, "\n".join(up)


def test_no_import_cycles():
    graph = {m: {t for t in ts if (m, t) not in ALLOWED} for m, ts in _graph().items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checker_sees_cycles_and_upward_imports(monkeypatch):
    # the checker itself can fail: a made-up upward edge and a cycle are reported
    real = _graph()
    fake = {**real, "fnnet.core": real["fnnet.core"] | {"fnnet.walk"}}
    monkeypatch.setattr(sys.modules[__name__], "_graph", lambda: fake)
    try:
        test_no_upward_imports()
    except AssertionError as err:
        assert "fnnet.core (floor 2) imports fnnet.walk (floor 3)" in str(err)
    else:
        raise AssertionError("an upward import went unnoticed")
    try:
        test_no_import_cycles()
    except AssertionError as err:
        assert "fnnet.walk -> fnnet.core" in str(err) or "fnnet.core -> fnnet.walk" in str(err)
    else:
        raise AssertionError("an import cycle went unnoticed")
