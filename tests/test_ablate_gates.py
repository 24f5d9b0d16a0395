"""experiments/ablate_gates.py: --help, bad names, and a seconds-long smoke run (every output)."""

import csv
import importlib.util
import pathlib
import sys

import jax
import numpy as np
import pytest

from jaxrnn import variants

# Subprocess runs of whole scripts: skipped by `pytest -m 'not slow'`, run by .ci/run.
pytestmark = pytest.mark.slow

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "ablate_gates.py"


@pytest.fixture(scope="module")
def ablate():
    spec = importlib.util.spec_from_file_location("ablate_gates", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ablate_gates"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("ablate_gates", None)


def test_help_documents_everything(ablate, capsys):
    with pytest.raises(SystemExit) as exc:
        ablate.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--task", "--variants", "--seeds", "--out", "--seq-len", "--equal-params",
                 "--search", "--smoke", "--lm-corpus", "Adding a task", "results.csv",
                 "gradflow_<task>.png"):
        assert flag in text, flag
    for name in ("adding", "copy", "digits", "charlm", *variants.names()):
        assert name in text, name


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--task", "addding"], "unknown task ['addding']; valid tasks: adding, copy, digits"),
        (["--variants", "vanilla,lstmm"], "unknown variant ['lstmm']; valid variants: vanilla, "),
    ],
)
def test_bad_names_list_the_valid_ones(ablate, capsys, argv, expected):
    with pytest.raises(SystemExit) as exc:
        ablate.main(argv)
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


def test_smoke_run_writes_every_output(ablate, tmp_path, capsys):
    finals = ablate.main(["--smoke", "--variants", "vanilla,mingru", "--equal-params",
                          "--search", "2", "--out", str(tmp_path)])
    assert set(finals["adding"]) == {"vanilla", "mingru"}
    for name in ("results.csv", "curves.csv", "results.md", "curves_adding.png",
                 "boxplot_adding.png", "gradflow_adding.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"task", "variant", "seed", "metric", "value", "steps", "wall_s"} <= set(rows[0])
    assert [(r["variant"], r["seed"]) for r in rows] == [
        ("vanilla", "0"), ("vanilla", "1"), ("mingru", "0"), ("mingru", "1")]
    assert all(np.isfinite(float(r["value"])) for r in rows)
    # equal parameter budget: minGRU gets a larger hidden size than the vanilla LSTM
    hidden = {r["variant"]: int(r["hidden_size"]) for r in rows}
    params = {r["variant"]: int(r["num_params"]) for r in rows}
    assert hidden["mingru"] > hidden["vanilla"]
    assert abs(params["mingru"] - params["vanilla"]) / params["vanilla"] < 0.1
    table = (tmp_path / "results.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[1].startswith("| vanilla |") and lines[2].startswith("| mingru |")
    assert "Welch" in table
    out = capsys.readouterr().out
    assert "step    10/20" in out  # progress while it runs


def test_user_cells_by_module_attr_spec(ablate, capsys):
    """A user's cell (tests/user_cells.py, only init/initial_carry/step, a dict carry) is
    accepted as a "module:attr" spec; an unimportable spec names itself."""
    args = ablate.parse_args(["--variants", "vanilla,user_cells:TanhRNN", "--smoke"])
    assert args.variant_names == ("vanilla", "user_cells:TanhRNN")
    cell = variants.make("user_cells:TanhRNN", 4)
    task = ablate.TASKS["adding"](args)
    params = ablate.init_model(cell, task, jax.random.PRNGKey(0))
    batch = task.sample(jax.random.PRNGKey(1), 2)
    flow = ablate.grad_flow(cell, task, params, batch)
    assert flow.shape == (batch.xs.shape[1],) and bool(np.all(np.isfinite(flow)))
    with pytest.raises(SystemExit):
        ablate.parse_args(["--variants", "no_such_module:Cell"])
    assert "cannot import module 'no_such_module'" in capsys.readouterr().err
