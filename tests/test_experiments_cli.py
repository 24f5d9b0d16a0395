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
