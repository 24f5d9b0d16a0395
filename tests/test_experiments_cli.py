"""Every script in experiments/ runs on experiments/harness.py: its --help shows the common
flags with their defaults. (Each script's smoke-run test checks its run folder with
experiment_outputs.check_run_outputs.)"""

import importlib.util
import pathlib
import re
import sys

import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
SCRIPTS = sorted(p.stem for p in EXPERIMENTS.glob("*.py")
                 if re.search(r'^if __name__ == "__main__":', p.read_text(encoding="utf-8"),
                              re.MULTILINE))


def test_the_scripts_are_found():
    assert {"char_textgen", "sentiment", "seq2seq_attention", "seq_classify",
            "time_series", "ptb_lm", "ablate_gates"} <= set(SCRIPTS)
    assert "harness" not in SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_the_common_flags_and_defaults(name, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"experiment_cli_{name}",
                                                  EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: runs/{name})" in text
    assert "random seed (default: 0)" in text
    for flag in ("--out", "--resume", "--seed", "--smoke", "--no-progress"):
        assert flag in text, flag


def test_harness_plot_curves_and_count_params(tmp_path, capsys):
    import numpy as np

    import harness

    args = harness.parse(harness.parser("toy.py", "A toy."), ["--out", str(tmp_path)])
    with harness.start(args) as run:
        (tmp_path / "metrics.jsonl").write_text("")
        harness.plot_curves(run, "loss.png", key="loss")  # nothing to plot: says so
        assert "(no loss.png: " in capsys.readouterr().out
        assert not (tmp_path / "loss.png").exists()
        (tmp_path / "metrics.jsonl").write_text(
            '{"split": "train", "step": 1, "epoch": 0.5, "loss": 2.0}\n'
            '{"split": "train", "step": 2, "epoch": 1.0, "loss": 1.5}\n')
        harness.plot_curves(run, "loss.png", key="loss")
        assert (tmp_path / "loss.png").stat().st_size > 0
    params = {"w": np.zeros((3, 4)), "b": np.zeros(4), "layers": [np.zeros((2, 2))]}
    assert harness.count_params(params) == 20
