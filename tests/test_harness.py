"""experiments/harness.py: flags and --help, the run lock, --resume checks, JSON files, pieces."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import harness

DOC = """A toy experiment.

    python toy.py --out runs/toy

Outputs in --out: config.json, results.json.
"""


def toy_parser():
    p = harness.parser("/somewhere/toy.py", DOC)
    p.add_argument("--lr", type=harness.positive_float, default=0.1, help="learning rate")
    p.add_argument("--width", choices=["small", "large"], default="small", help="model width")
    p.add_argument("--flag", action="store_true", help="a switch")
    p.add_argument("--epochs", type=harness.positive_int, default=3, help="epochs")
    p.add_argument("--max-steps", type=harness.positive_int, help="stop after this many steps")
    return p


def open_run(argv, **kwargs):
    return harness.start(harness.parse(toy_parser(), argv), **kwargs)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def finished_run(out: Path, *argv, records=None):
    with open_run(["--out", str(out), *argv]) as run:
        run.write_config(records or {"examples": 10})
        run.write_results({"accuracy": np.float32(0.5), "where": out, "curve": np.arange(3)})


def test_help_shows_the_common_flags_with_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        harness.parse(toy_parser(), ["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--out", "--resume", "--seed", "--smoke", "--no-progress", "--override"):
        assert flag in text, flag
    assert "(default: runs/toy)" in text and "learning rate (default: 0.1)" in text
    assert "random seed (default: 0)" in text
    assert "a switch (default" not in text  # no "(default: False)"
    assert "python toy.py --out runs/toy" in text  # the docstring's layout is kept


def test_first_line_names_the_output_folder_and_files_are_written(tmp_path, capsys):
    finished_run(tmp_path / "run", "--lr", "0.5")
    assert capsys.readouterr().out.splitlines()[0] == f"output folder: {tmp_path / 'run'}"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["script"] == "toy" and config["lr"] == 0.5 and config["examples"] == 10
    assert config["out"] == str(tmp_path / "run") and "resume" not in config
    assert config["environment"]["backend"] == jax.default_backend()
    assert config["overrides"] == [] and config["resumes"] == []
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results == {"accuracy": 0.5, "where": str(tmp_path / "run"), "curve": [0, 1, 2]}


def test_a_second_run_into_a_live_folder_stops_naming_the_pid(tmp_path, capsys):
    with open_run(["--out", str(tmp_path)]):
        with pytest.raises(SystemExit) as exc:
            open_run(["--out", str(tmp_path), "--resume"])
        assert exc.value.code == 2
        assert f"another run (pid {os.getpid()}) is writing into {tmp_path}" in (
            capsys.readouterr().err)
    with open_run(["--out", str(tmp_path), "--resume"]):  # released at the end of the run
        pass


def test_the_lock_dies_with_its_process(tmp_path):
    holder = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(harness.__file__).parent)!r})
        import harness
        args = harness.parse(harness.parser("toy.py", "doc"), ["--out", {str(tmp_path)!r}])
        run = harness.start(args)
        print("locked", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    try:
        assert proc.stdout.readline().strip() == f"output folder: {tmp_path}"
        assert proc.stdout.readline().strip() == "locked"
        child = subprocess.run(
            [sys.executable, "-c", holder.replace("time.sleep(600)", "")],
            capture_output=True, text=True, timeout=120)
        assert child.returncode == 2
        assert f"another run (pid {proc.pid}) is writing into" in child.stderr
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with open_run(["--out", str(tmp_path), "--resume"]):  # kill -9 released it
        pass


def test_a_folder_holding_a_run_needs_resume(tmp_path, capsys):
    finished_run(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exc:
        open_run(["--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "already holds a run (config.json); pass --resume" in capsys.readouterr().err
    (tmp_path / "fresh" / "checkpoints" / "40").mkdir(parents=True)
    with pytest.raises(SystemExit):
        open_run(["--out", str(tmp_path / "fresh")])
    assert "checkpoints up to step 40" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_resume_refuses_changed_settings_and_writes_nothing(tmp_path, capsys):
    finished_run(tmp_path, "--lr", "0.5")
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit) as exc:
        open_run(["--out", str(tmp_path), "--resume", "--lr", "0.25", "--width", "large"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--lr: 0.5 in the run, 0.25 requested" in err
    assert "--width: 'small' in the run, 'large' requested" in err
    assert "--override KEY=VALUE" in err
    assert snapshot(tmp_path) == before  # config.json byte-identical, nothing else written


def test_resume_ignores_when_to_stop_and_how_to_show(tmp_path, capsys):
    finished_run(tmp_path)
    (tmp_path / "checkpoints" / "20").mkdir(parents=True)
    capsys.readouterr()
    with open_run(["--out", str(tmp_path), "--resume", "--max-steps", "5", "--no-progress",
                   "--epochs", "9"], not_compared=("epochs",)) as run:
        assert run.resume_step == 20
        assert capsys.readouterr().out.splitlines()[1] == "resuming from step 20"
        config = run.write_config({"examples": 10})
    assert config["resumes"][0]["step"] == 20 and config["epochs"] == 3
    assert "max_steps" in config and config["overrides"] == []


def test_override_is_recorded_with_its_step_and_holds_from_then_on(tmp_path, capsys):
    finished_run(tmp_path, "--lr", "0.5")
    (tmp_path / "checkpoints" / "30").mkdir(parents=True)
    with open_run(["--out", str(tmp_path), "--resume", "--override", "lr=0.25",
                   "--override=--flag=true"]) as run:
        assert run.args.lr == 0.25 and run.args.flag is True
        config = run.write_config({"examples": 10})
    assert config["lr"] == 0.5  # what the run started with
    assert config["overrides"] == [{"key": "lr", "from": 0.5, "to": 0.25, "step": 30},
                                   {"key": "flag", "from": False, "to": True, "step": 30}]
    before = snapshot(tmp_path)
    with pytest.raises(SystemExit):  # the run now uses 0.25: dropping the override is a change
        open_run(["--out", str(tmp_path), "--resume", "--lr", "0.5", "--flag"])
    assert "--lr: 0.25 in the run, 0.5 requested" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    with open_run(["--out", str(tmp_path), "--resume", "--lr", "0.25", "--flag"]) as run:
        config = run.write_config({"examples": 10})
    assert len(config["overrides"]) == 2 and len(config["resumes"]) == 2


@pytest.mark.parametrize("argv, message", [
    (["--override", "lr=0.2"], "use it with --resume"),
    (["--resume", "--override", "depth=3"], "KEY among"),
    (["--resume", "--override", "lr"], "expected KEY=VALUE"),
    (["--resume", "--override", "lr=-1"], "--override --lr=-1: must be > 0"),
    (["--resume", "--override", "width=huge"], "expected one of ['large', 'small']"),
    (["--resume", "--override", "out=elsewhere"], "KEY among"),
])
def test_bad_overrides_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        harness.parse(toy_parser(), argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_device_flag_errors_name_the_flag(capsys):
    p = toy_parser()
    harness.add_device_flags(p)
    with pytest.raises(SystemExit) as exc:
        harness.device_mesh(harness.parse(p, ["--devices", "9999"]))
    assert exc.value.code == 2 and "(--devices) is 9999" in capsys.readouterr().err
    mesh = harness.device_mesh(harness.parse(p, ["--devices", "1"]))
    harness.check_batch_size(mesh, 3)  # one device splits any batch
    assert mesh.size == 1


def test_changed_data_records_stop_a_resume(tmp_path, capsys):
    finished_run(tmp_path, records={"examples": 10})
    before = snapshot(tmp_path)
    with open_run(["--out", str(tmp_path), "--resume"]) as run, pytest.raises(SystemExit):
        run.write_config({"examples": 12})
    assert "examples: 10 in the run, 12 now" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_completed_units_are_skipped_on_resume(tmp_path, capsys):
    with open_run(["--out", str(tmp_path)]) as run:
        run.write_config()
        assert run.completed("a") is None
        run.save_completed("a", {"value": 1})
        assert run.completed("a") is None  # a new run recomputes everything
    with open_run(["--out", str(tmp_path), "--resume", "--override", "lr=0.3"]) as run:
        assert capsys.readouterr().out.splitlines()[-2:] == [
            f"output folder: {tmp_path}", "resuming with 1 finished: a"]
        assert run.completed("a") == {"value": 1} and run.completed("b") is None
        config = run.write_config()
    assert config["overrides"][0]["completed"] == ["a"]


def test_main_sets_up_the_host_then_exits_with_the_code(monkeypatch):
    calls = []
    monkeypatch.setattr("jaxrnn.train.reexec_with_allocator_settings", lambda: calls.append(1))
    for returned, code in ((3, 3), ({"a": 1}, 0), (None, 0)):
        with pytest.raises(SystemExit) as exc:
            harness.main(lambda returned=returned: returned)
        assert exc.value.code == code
    assert calls == [1, 1, 1]


def test_dense_init_and_apply():
    key = jax.random.PRNGKey(0)
    uniform = harness.dense_init(key, 16, 3)
    assert uniform["w"].shape == (16, 3) and uniform["b"].shape == (3,)
    assert float(np.abs(uniform["w"]).max()) <= 0.25
    normal = harness.dense_init(key, 16, 3, distribution="normal")
    np.testing.assert_array_equal(normal["w"].T, jax.random.normal(key, (3, 16)) / 4.0)
    x = np.ones((2, 5, 16), np.float32)
    assert harness.dense(uniform, x).shape == (2, 5, 3)
    with pytest.raises(ValueError, match="distribution='xavier'"):
        harness.dense_init(key, 4, 4, distribution="xavier")


def test_cells_from_names_and_module_specs(capsys):
    assert type(harness.make_cell("gru", 8)).__name__ == "GRU"
    cell = harness.make_cell("jaxrnn:LSTM", 8)
    assert type(cell).__name__ == "LSTM" and cell.hidden_size == 8
    assert harness.check_cells(toy_parser(), ["np", "jaxrnn:GRU"]) == ("np", "jaxrnn:GRU")
    for spec in ("lstmm", "jaxrnn:Nothing", "no_such_module:X"):
        with pytest.raises(SystemExit):
            harness.check_cells(toy_parser(), [spec])
        assert f"unknown variant {spec!r}" in capsys.readouterr().err


def test_main_turns_known_errors_into_one_line_and_an_exit_code(capsys, monkeypatch):
    import errno

    from jaxrnn.data import DataError
    from jaxrnn.train import CheckpointSaveError, CorruptCheckpointError, NonFiniteLossError

    monkeypatch.setenv("JAXRNN_SYSTEM_MALLOC", "1")  # no re-exec inside the test process

    def raising(err):
        def script_main():
            raise err
        return script_main

    cases = [
        (DataError("ptb.train.txt is empty"), 2),
        (CorruptCheckpointError(8, Path("/r/checkpoints/8"), "unreadable"), 2),
        (NonFiniteLossError(5, 4, 4), 3),
        (CheckpointSaveError(8, "/r/checkpoints/8", errno.ENOSPC, "No space left on device"), 4),
    ]
    for err, code in cases:
        with pytest.raises(SystemExit) as info:
            harness.main(raising(err))
        assert info.value.code == code
        assert capsys.readouterr().err == f"error: {err}\n"
    with pytest.raises(SystemExit) as info:
        harness.main(lambda: 0)
    assert info.value.code == 0
    with pytest.raises(RuntimeError, match="a bug"):  # an unexpected error keeps its traceback
        harness.main(raising(RuntimeError("a bug")))
