"""pyproject.toml's dependencies match what jaxrnn imports.

The core dependencies are what ``import jaxrnn`` and its subpackages import at module level;
the packages of the ``experiments`` and ``torch`` extras are imported only inside the functions
that use them (or, for torch, by the lazily loaded ``jaxrnn.interop.torch``), so jaxrnn imports
without them.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# import name -> distribution name, where they differ
DISTRIBUTION = {"orbax": "orbax-checkpoint", "sklearn": "scikit-learn", "tensorboardX":
                "tensorboardx"}
# modules that may import an extra's package at module level, and which extra it is
EXTRA_MODULES = {"jaxrnn/interop/torch.py": "torch"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def _module_level_imports(path: pathlib.Path) -> set[str]:
    """Top-level package names imported outside any function or class body of ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in tree.body:
        nodes = [node]
        if isinstance(node, ast.If | ast.Try):  # e.g. if TYPE_CHECKING / try: import
            nodes += list(ast.walk(node))
        for item in nodes:
            if isinstance(item, ast.Import):
                found |= {alias.name.split(".")[0] for alias in item.names}
            elif isinstance(item, ast.ImportFrom) and item.level == 0 and item.module:
                found.add(item.module.split(".")[0])
    return found


def test_module_level_imports_are_core_dependencies():
    core = _names(PYPROJECT["project"]["dependencies"])
    extras = {k: _names(v) for k, v in PYPROJECT["project"]["optional-dependencies"].items()}
    stdlib = set(sys.stdlib_module_names)
    wrong = []
    for path in sorted((ROOT / "jaxrnn").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        allowed = core | extras.get(EXTRA_MODULES.get(rel, ""), set())
        for name in sorted(_module_level_imports(path) - stdlib - {"jaxrnn", "__future__"}):
            if DISTRIBUTION.get(name, name).lower() not in allowed:
                wrong.append(f"{rel}: import {name}")
    assert not wrong, "module-level imports of packages that are not core dependencies:\n" + \
        "\n".join(wrong)


def test_extras_hold_what_the_experiments_and_tests_need():
    extras = {k: _names(v) for k, v in PYPROJECT["project"]["optional-dependencies"].items()}
    assert {"matplotlib", "scipy", "scikit-learn", "statsmodels", "tensorboardx",
            "tqdm"} <= extras["experiments"]
    assert "torch" in extras["torch"]
    assert {"pytest", "pytest-xdist", "equinox", "ruff"} <= extras["test"]
    test_extra = " ".join(PYPROJECT["project"]["optional-dependencies"]["test"])
    # the tests run the experiments and the PyTorch parity checks
    assert re.search(r"jaxrnn\[[^\]]*experiments", test_extra), test_extra
    assert re.search(r"jaxrnn\[[^\]]*torch", test_extra), test_extra


def test_jaxrnn_imports_without_the_extras():
    """Every subpackage imports with the extras' packages missing (blocked in sys.modules)."""
    code = (
        "import sys\n"
        "for m in ('matplotlib', 'sklearn', 'statsmodels', 'tensorboardX', 'tqdm', 'torch'):\n"
        "    sys.modules[m] = None\n"
        "import jaxrnn\n"
        "for name in ('train', 'data', 'nn', 'decoding', 'distributed', 'interop', 'drivers',\n"
        "             'kernels', 'variants'):\n"
        "    getattr(jaxrnn, name)\n"
        "import jaxrnn.interop.flax_modules, jaxrnn.interop.flax_convert\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
