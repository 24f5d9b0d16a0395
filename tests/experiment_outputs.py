"""What every experiment script's run folder holds (experiments/harness.py): the smoke-run tests
call :func:`check_run_outputs` on the runs they already make."""

import json
import pathlib


def check_run_outputs(out: pathlib.Path, script: str, stdout: str) -> tuple[dict, dict]:
    """Asserts the harness's outputs of a finished ``--smoke`` run of ``script`` into ``out``:
    the first printed line names the folder; ``config.json`` records the script, its settings
    and the environment; ``results.json`` is there. Returns (config, results)."""
    assert stdout.splitlines()[0] == f"output folder: {out}", stdout[:500]
    config = json.loads((out / "config.json").read_text())
    assert config["script"] == script
    assert config["out"] == str(out) and config["smoke"] is True and config["seed"] == 0
    assert {"backend", "jax_version", "host_allocator"} <= set(config["environment"])
    assert config["overrides"] == [] and config["resumes"] == []
    results = json.loads((out / "results.json").read_text())
    assert results, f"{out / 'results.json'} is empty"
    return config, results
