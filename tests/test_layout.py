"""The package layout: each subpackage imports only from the layers below it, and no module
imports itself back through a cycle (checked on the source, without importing it)."""

import ast
import pathlib

import pytest

import jaxrnn

ROOT = pathlib.Path(__file__).resolve().parents[1] / "jaxrnn"

# Lower layers first: a module may import from its own layer and the ones above it in this list.
LAYERS = [
    {"_checks", "platform_choice", "tuning"},
    {"cells", "data", "decoding"},
    {"variants", "kernels", "train"},
    {"drivers"},
    {"nn", "distributed"},
    {"interop"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path, top_level_only: bool = False) -> set[str]:
    """The jaxrnn modules ``path`` imports (``from jaxrnn.x import y``: jaxrnn.x.y if that is a
    module, else jaxrnn.x)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "jaxrnn" or node.module.startswith("jaxrnn."):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    if node.module == "jaxrnn" and a.name in jaxrnn._LAZY:  # a lazy attribute
                        sub = jaxrnn._LAZY[a.name]
                    found.add(sub if sub in MODULES or node.module == "jaxrnn" else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("jaxrnn.")}
    return found


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer(module: str) -> str:
    return module.split(".")[1]


@pytest.mark.parametrize("module", [m for m in MODULES if m != "jaxrnn"])
def test_no_upward_imports(module):
    if layer(module) not in RANK:
        pytest.fail(f"{module}: its subpackage {layer(module)!r} has no place in LAYERS")
    upward = [m for m in imports(MODULES[module])
              if layer(m) in RANK and RANK[layer(m)] > RANK[layer(module)]]
    assert not upward, f"{module} imports from a higher layer: {sorted(upward)}"


def test_cells_import_no_driver_training_data_or_interop_code():
    for module, path in MODULES.items():
        if module != "jaxrnn" and layer(module) == "cells":
            bad = [m for m in imports(path)
                   if layer(m) in {"drivers", "train", "data", "interop", "nn", "kernels"}]
            assert not bad, f"{module} imports {bad}"


def test_no_import_cycles():
    graph = {}
    for module, path in MODULES.items():
        deps = imports(path, top_level_only=True)
        # a package's __init__ re-exporting its own submodules is not a cycle
        own = path.name == "__init__.py"
        graph[module] = {d for d in deps if d in MODULES and d != module
                         and not (own and d.startswith(module + "."))}
    done: set[str] = set()

    def visit(m, stack):
        for d in graph[m]:
            if d in stack:
                pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(d):], d]))
            if d not in done:
                visit(d, [*stack, d])
        done.add(m)

    for m in graph:
        visit(m, [m])


def test_modules_stay_small():
    """A module over ~400 lines usually does two jobs; these are the known long single-job
    modules, each with its one job."""
    long_ok = {
        "jaxrnn.drivers.scan",  # the scan driver: strategies, remat, lengths, reverse
        "jaxrnn.interop.torch",  # torch.nn.RNN/LSTM/GRU weights both ways and TorchLikeRNN
        "jaxrnn.train.checkpoint",  # the Checkpointer: save, restore, fall back, quarantine
        "jaxrnn.train.loop",  # the resumable training loop
    }
    too_long = {m: n for m, p in MODULES.items()
                if (n := len(p.read_text().splitlines())) > 420 and m not in long_ok}
    assert not too_long, too_long
