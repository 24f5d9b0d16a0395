"""experiments/ablate_gates.py: --help, bad names, a seconds-long smoke run (every output) and
its --resume."""

import csv
import importlib.util
import json
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
                 "gradflow_<task>.png", "--resume", "--seed", "--no-progress", "--override",
                 "results.json", "config.json"):
        assert flag in text, flag
    flat = " ".join(text.split())
    for default in ("(default: runs/ablate_gates)", "(default: 5; --smoke: 2)",
                    "(default: adding)", "(default: 250; --smoke: 10)"):
        assert default in flat, default
    for name in ("adding", "copy", "digits", "charlm", *variants.names()):
        assert name in text, name


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--task", "addding"],
         ["--task: unknown task ['addding']; valid tasks: adding, copy, digits"]),
        (["--variants", "vanilla,lstmm"],
         ["--variants: unknown variant 'lstmm'", "valid variants: vanilla, "]),
        (["--seeds", "0"], ["argument --seeds: must be a positive integer; got 0"]),
        (["--lr-range", "0.1", "0.01"], ["--lr-range 0.1 0.01: LOW must not exceed HIGH"]),
    ],
)
def test_bad_names_list_the_valid_ones(ablate, capsys, argv, expected):
    with pytest.raises(SystemExit) as exc:
        ablate.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, text


def test_smoke_fills_only_what_is_not_given(ablate):
    args = ablate.parse_args(["--smoke", "--seeds", "3"])
    assert (args.seeds, args.steps, args.hidden, args.eval_every) == (3, 20, 8, 10)
    assert args.variant_names == ("vanilla", "nfg", "mingru")
    args = ablate.parse_args([])
    assert (args.seeds, args.steps, args.eval_every, args.seq_len) == (5, None, 250, 50)
    assert str(args.out) == "runs/ablate_gates" and len(args.variant_names) > 10


def test_smoke_run_writes_every_output_and_resumes(ablate, tmp_path, capsys):
    argv = ["--smoke", "--variants", "vanilla,mingru", "--equal-params", "--search", "2",
            "--out", str(tmp_path)]
    finals = ablate.main(argv)
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == f"output folder: {tmp_path}"
    assert set(finals["adding"]) == {"vanilla", "mingru"}
    for name in ("results.csv", "curves.csv", "results.md", "curves_adding.png",
                 "boxplot_adding.png", "gradflow_adding.png", "config.json", "results.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["script"] == "ablate_gates" and config["seeds"] == 2
    assert config["variant_names"] == ["vanilla", "mingru"]
    results = json.loads((tmp_path / "results.json").read_text())["adding"]
    assert results["metric"] == "test_mse" and list(results["variants"]) == ["vanilla", "mingru"]
    assert "p_welch" in results["variants"]["mingru"]
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
    assert "step    10/20" in printed  # progress while it runs
    for row in rows:  # results.json holds the numbers of results.csv
        entry = results["variants"][row["variant"]]
        value = entry["values"][entry["seeds"].index(int(row["seed"]))]
        assert f"{value:.6g}" == row["value"] and entry["hidden_size"] == int(row["hidden_size"])

    # --resume: finished variants are read back, not trained again; the outputs are the same
    before = {name: (tmp_path / name).read_bytes()
              for name in ("results.csv", "curves.csv", "results.md", "results.json")}
    ablate.main([*argv, "--resume", "--no-progress"])
    printed = capsys.readouterr().out
    assert printed.splitlines()[1] == "resuming with 2 finished: adding.mingru, adding.vanilla"
    assert printed.count("done in the run being continued") == 2 and " step " not in printed
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert len(json.loads((tmp_path / "config.json").read_text())["resumes"]) == 1


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
