"""The documentation's code runs: every ```python block of README.md and of every page under
docs/, in order.

The blocks of one page share one namespace, as a reader typing them into one session would.
They run from the repository root (guides name files such as ``experiments/...``) with JAX's
default promotion rules, the ones a user has (this suite's conftest makes them strict).
Pages in ``SUBPROCESS`` run in a fresh interpreter with the environment given there: the
multi-device guide needs ``XLA_FLAGS`` set before JAX starts.

Run one page as a script: ``python tests/test_docs.py docs/guides/lengths.md``.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SUBPROCESS = {
    "docs/guides/distributed.md": {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
}
PAGES = ["README.md"] + sorted(
    str(path.relative_to(ROOT)) for path in DOCS.rglob("*.md") if "```python" in path.read_text()
)


def blocks(page: str) -> list[tuple[int, str]]:
    """``(line number of the block's first line, code)`` for each python block of ``page``."""
    text = (ROOT / page).read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def run_page(page: str) -> None:
    """Executes the page's blocks in one namespace; a failure names the page and line."""
    import jax

    # A real module, so that classes defined on the page behave as in a script (dataclasses,
    # pickling look their module up in sys.modules).
    module = types.ModuleType("__docs__")
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    sys.modules[module.__name__] = module
    try:
        with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
            for line, code in blocks(page):
                # Newlines first, so that tracebacks give the page's own line numbers.
                source = "\n" * (line - 1) + code
                exec(compile(source, page, "exec", dont_inherit=True), module.__dict__)
    finally:  # what a page adds to sys.path, and modules imported from there, stay with it
        added = [str(pathlib.Path(p).resolve()) for p in sys.path if p not in saved_path]
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            # (modules of installed packages stay: a C extension cannot be loaded twice)
            if name == module.__name__ or any(origin.startswith(a) for a in added):
                del sys.modules[name]


def directives() -> dict[str, list[str] | None]:
    """``{identifier: members}`` of every ``::: identifier`` in docs/api/ (members: the
    ``members:`` list when the directive restricts it, else None)."""
    found: dict[str, list[str] | None] = {}
    for path in sorted((DOCS / "api").glob("*.md")):
        for match in re.finditer(r"^::: (\S+)\n((?:[ \t]+\S.*\n)*)", path.read_text(), re.M):
            members = re.search(r"members:\s*(\[.*\]|false)", match.group(2))
            found[match.group(1)] = (
                None if members is None else re.findall(r"[A-Za-z_]\w*", members.group(1))
            )
    return found


def test_api_reference_covers_every_public_name():
    import importlib

    import jaxrnn
    import jaxrnn.interop

    api = directives()
    top = [n for n in jaxrnn.__all__ if n != "__version__"
           and not isinstance(getattr(jaxrnn, n), type(jaxrnn))]
    missing = [f"jaxrnn.{n}" for n in top if f"jaxrnn.{n}" not in api]
    modules = ["jaxrnn.variants", "jaxrnn.drivers.parallel", "jaxrnn.train", "jaxrnn.data",
               "jaxrnn.decoding", "jaxrnn.nn.attention", "jaxrnn.nn.losses",
               "jaxrnn.nn.language_model", "jaxrnn.nn.lm_run", "jaxrnn.tuning",
               "jaxrnn.drivers.strategy", "jaxrnn.distributed",
               *sorted(set(jaxrnn.interop._LAZY.values()))]
    for name in modules:
        module = importlib.import_module(name)
        if name not in api:
            missing.append(name)
        elif api[name] is not None:  # a restricted member list: the rest is rendered elsewhere
            for member in getattr(module, "__all__", []):
                owner = getattr(getattr(module, member), "__module__", name)
                if member not in api[name] and owner not in api:
                    missing.append(f"{name}.{member}")
    assert not missing, f"no ::: directive in docs/api/ renders {missing}"


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "README.md links to no guide"
    assert [t for t in local if not (ROOT / t).exists()] == []


def test_every_python_fence_is_extracted():
    for page in PAGES:
        text = (ROOT / page).read_text()
        assert len(blocks(page)) == text.count("```python"), (
            f"{page}: a ```python fence is indented or unclosed; blocks must start at "
            "the beginning of a line to be tested"
        )


@pytest.mark.parametrize("page", PAGES)
def test_page_runs(page, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    if page in SUBPROCESS:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, **SUBPROCESS[page], "PYTHONPATH": path, "MPLBACKEND": "Agg"}
        proc = subprocess.run(
            [sys.executable, str(pathlib.Path(__file__)), page],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, f"{page} failed:\n{proc.stdout}\n{proc.stderr}"
    else:
        run_page(page)


if __name__ == "__main__":
    run_page(str(pathlib.Path(sys.argv[1]).resolve().relative_to(ROOT)))
