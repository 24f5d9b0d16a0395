"""Tests for jaxrnn.distributed: 8 forced host devices and two processes against one device.

The multi-device runs happen in subprocesses (tests/distributed_worker.py) with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` set before jax is imported; this
process keeps its one device and computes the reference runs.
"""

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxrnn import distributed, train

# Subprocess runs of whole scripts: skipped by `pytest -m 'not slow'`, run by .ci/run.
pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("distributed_worker.py")
_spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)

TOL = dict(rtol=1e-5, atol=1e-6)
TIMEOUT_S = 240


def _env(num_devices: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"))}
    env["XLA_FLAGS"] = (f"{os.environ.get('XLA_FLAGS', '')} "
                        f"--xla_force_host_platform_device_count={num_devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _params(npz, prefix: str) -> list[np.ndarray]:
    return [npz[k] for k in sorted(npz.files) if k.startswith(prefix + "[")]


def _leaves(tree) -> list[np.ndarray]:
    """Leaves in the order of their key paths, as ``_params`` sorts them."""
    flat = worker.flat("", tree)
    return [flat[k] for k in sorted(flat)]


def _assert_close(got: list, want: list) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **TOL)


@pytest.fixture(scope="module")
def devices_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("devices8")
    proc = subprocess.run([sys.executable, str(WORKER), "devices", str(out)], env=_env(8),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, np.load(out / "devices.npz")


def _reference(dropout: float):
    loss_fn, optimizer, state, batches = worker.setup(dropout)
    step = train.make_train_step(loss_fn, optimizer, donate=False)
    losses, final = worker.run(step, state, batches)
    return losses, final, step


@pytest.fixture(scope="module")
def reference():
    """One device, no mesh: plain jaxrnn.train.make_train_step; with and without dropout.
    ``{name: (losses, final state, the jitted step)}``."""
    return {"dropout": _reference(0.3), "plain": _reference(0.0)}


def test_sharded_8_devices_equal_1_device(devices_run, reference):
    _, got = devices_run
    losses, final, _ = reference["dropout"]  # dropout masks do not depend on device count
    np.testing.assert_allclose(got["sharded_losses"], losses, **TOL)
    _assert_close(_params(got, "sharded"), _leaves(final.params))
    assert got["saved_carry_spec"].tolist() == ["batch"]  # the carry is split, not copied


def test_pmap_8_devices_equal_1_device(devices_run, reference):
    _, got = devices_run
    losses, final, _ = reference["plain"]
    assert bool(got["pmap_replicas_equal"])
    np.testing.assert_allclose(got["pmap_losses"], losses, **TOL)
    _assert_close(_params(got, "pmap"), _leaves(final.params))
    _assert_close(_params(got, "pmap_carry"), _leaves(final.carry))


def test_checkpoint_from_8_devices_resumes_on_4(devices_run, reference):
    _, got = devices_run
    losses, final, _ = reference["dropout"]
    assert int(got["restored4_devices"]) == 4
    np.testing.assert_allclose(got["resumed4_losses"], losses[worker.SAVE_AT:], **TOL)
    np.testing.assert_allclose(got["resumed4_losses"],
                               got["sharded_losses"][worker.SAVE_AT:], **TOL)
    _assert_close(_params(got, "resumed4"), _leaves(final.params))


def test_checkpoint_from_8_devices_resumes_on_1(devices_run, reference):
    out, got = devices_run
    _, _, state0, batches = worker.setup(0.3)
    mesh = distributed.make_mesh()
    assert mesh.size == 1
    with train.Checkpointer(out / "ckpt8") as ckpt:
        state, meta = ckpt.restore(like=distributed.abstract_state(state0, mesh))
    assert meta == {"devices": 8}
    saved = {k[len("saved"):]: got[k] for k in got.files if k.startswith("saved.")}
    restored = worker.flat("", state)
    assert sorted(saved) == sorted(restored)
    for key, value in restored.items():  # bitwise, carry and optimizer state included
        assert value.dtype == saved[key].dtype and value.tobytes() == saved[key].tobytes(), key
    losses, final, step = reference["dropout"]  # the plain one-device step
    tail, state = worker.run(step, state, batches[worker.SAVE_AT:])
    np.testing.assert_allclose(tail, losses[worker.SAVE_AT:], **TOL)
    _assert_close(_leaves(state.params), _leaves(final.params))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_together_like_one(tmp_path, reference):
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "process", str(tmp_path), "--process-id", str(i),
             "--num-processes", "2", "--port", str(port)],
            env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    logs = []
    try:
        for proc in procs:
            logs.append(proc.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    losses, final, _ = reference["dropout"]
    runs = [np.load(tmp_path / f"process{i}.npz") for i in range(2)]
    for i, run in enumerate(runs):
        assert int(run["global_devices"]) == 4 and int(run["local_devices"]) == 2
        assert run["rows"].tolist() == [4 * i, 4 * i + 4]  # each process fed its own rows
        np.testing.assert_allclose(run["losses"], losses, **TOL)
        _assert_close(_params(run, "params"), _leaves(final.params))
    # the checkpoint both processes wrote restores here, on one device
    loss_fn, optimizer, state0, _ = worker.setup(0.3)
    with train.Checkpointer(tmp_path / "ckpt_mp") as ckpt:
        state, meta = ckpt.restore(like=distributed.abstract_state(state0,
                                                                   distributed.make_mesh()))
    assert meta == {"processes": 2} and int(state.step) == worker.STEPS
    for got, want in zip(_leaves(state.params), _params(runs[0], "params"), strict=True):
        assert got.tobytes() == want.tobytes()


def test_batch_not_divisible_by_devices_is_a_clear_error(devices_run):
    _, got = devices_run
    message = str(got["divide_error"])
    assert "--batch-size=20 is not divisible by the 8 devices" in message
    assert "[1, 2, 4, 5]" in message


def test_bad_arguments_name_what_they_got():
    with pytest.raises(ValueError, match=r"num_devices \(--devices\) is 2; expected an int "
                                         r"in 1 \.\. 1"):
        distributed.make_mesh(2)
    with pytest.raises(ValueError, match="missing \\['num_processes', 'process_id'\\]"):
        distributed.initialize("localhost:1234")
    assert distributed.initialize() is False  # nothing given: a single-process run
    with pytest.raises(ValueError, match=r"has shape \(6, 3\): its batch axis 0 \(6\) is not "
                                         r"divisible by the 4 devices"):
        distributed.pmap_batch(np.zeros((6, 3)), 4)
    with pytest.raises(TypeError, match="must be a jaxrnn.train.TrainState; got dict"):
        distributed.state_shardings({"w": np.zeros(2)}, distributed.make_mesh())
    with pytest.raises(ValueError, match="is a scalar"):
        distributed.put_batch({"x": np.float32(1.0)}, distributed.make_mesh())


def test_one_device_mesh_step_equals_plain_step(reference):
    loss_fn, optimizer, state, batches = worker.setup(0.3)
    step = distributed.make_train_step(loss_fn, optimizer, distributed.make_mesh())
    losses, final = worker.run(step, state, batches)
    want_losses, want, _ = reference["dropout"]
    np.testing.assert_array_equal(losses, want_losses)
    for a, b in zip(_leaves(final), _leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.device_count() == 1  # this process never had more
