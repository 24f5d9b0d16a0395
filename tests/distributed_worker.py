"""Subprocess side of tests/test_distributed.py: runs with forced host devices or as one of
several processes, writes what it computed to an .npz, and shares the tiny training setup
with the test (which imports this file for its one-device reference).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/distributed_worker.py \
        devices OUT_DIR
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python tests/distributed_worker.py \
        process OUT_DIR --process-id I --num-processes 2 --port PORT
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import numpy as np

VOCAB, HIDDEN, BATCH, BPTT, STEPS, SAVE_AT = 32, 16, 8, 4, 6, 3


def setup(dropout: float):
    """(loss_fn, optimizer, initial TrainState, batches): a 2-layer LSTM language model."""
    import jaxrnn
    from jaxrnn import train
    from jaxrnn.nn.language_model import LanguageModel

    rnn = jaxrnn.StackedRNN(jaxrnn.LSTM(HIDDEN), num_layers=2, dropout=dropout)
    model = LanguageModel(VOCAB, rnn, embed_size=HIDDEN, dropout=dropout, init_scale=0.1)
    params = model.init(jax.random.PRNGKey(0))
    optimizer = train.make_optimizer("sgd", 0.5, clip_norm=1.0, momentum=0.9)

    def loss_fn(params, carry, batch, key):  # means over the batch: valid for pmap too
        x, y = batch
        loss, (carry, nll_sum) = model.loss(params, x, y, carry, key=key, train=True)
        return loss, (carry, {"loss": nll_sum / x.size})

    with jax.numpy_dtype_promotion("standard"):  # optax is not strict-clean everywhere
        state = train.TrainState.create(params, optimizer, seed=0,
                                        carry=model.initial_state(params, BATCH))
    stream = np.random.default_rng(0).integers(0, VOCAB, (BATCH, STEPS * BPTT + 1))
    batches = [train.get_window(stream.astype(np.int32), i, BPTT) for i in range(STEPS)]
    return loss_fn, optimizer, state, batches


def run(step, state, batches, *, put=lambda b: b):
    """Trains on ``batches``; returns (losses [n], state)."""
    losses = []
    with jax.numpy_dtype_promotion("standard"):
        for batch in batches:
            state, metrics = step(state, put(batch))
            losses.append(np.asarray(metrics["loss"]).reshape(-1)[0])
    return np.asarray(losses), state


def flat(prefix: str, tree) -> dict[str, np.ndarray]:
    """``{prefix + keypath: numpy array}`` for np.savez."""
    return {prefix + jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def devices_main(out: Path) -> None:
    """On 8 devices: sharding path (dropout) with a checkpoint at SAVE_AT, the same resumed on
    a 4-device mesh, and the pmap path (no dropout)."""
    from jaxrnn import distributed, train

    assert jax.device_count() == 8, jax.devices()
    results = {}
    try:
        distributed.check_batch_size(20, distributed.make_mesh(8), name="--batch-size")
    except ValueError as err:
        results["divide_error"] = np.asarray(str(err))
    loss_fn, optimizer, state0, batches = setup(dropout=0.3)
    mesh8 = distributed.make_mesh()
    step8 = distributed.make_train_step(loss_fn, optimizer, mesh8)
    head, state = run(step8, distributed.put_state(state0, mesh8), batches[:SAVE_AT])
    results |= flat("saved", state)
    results["saved_carry_spec"] = np.asarray(list(jax.tree.leaves(state.carry)[0].sharding.spec))
    with train.Checkpointer(out / "ckpt8") as ckpt:
        ckpt.save(SAVE_AT, state, {"devices": 8})
    tail, state = run(step8, state, batches[SAVE_AT:])
    results["sharded_losses"] = np.concatenate([head, tail])
    results |= flat("sharded", state.params)

    mesh4 = distributed.make_mesh(4)
    with train.Checkpointer(out / "ckpt8") as ckpt:
        restored, meta = ckpt.restore(like=distributed.abstract_state(state0, mesh4))
    assert meta == {"devices": 8}, meta
    results["restored4_devices"] = np.asarray(len(jax.tree.leaves(restored)[0].sharding.device_set))
    step4 = distributed.make_train_step(loss_fn, optimizer, mesh4)
    results["resumed4_losses"], state = run(step4, restored, batches[SAVE_AT:])
    results |= flat("resumed4", state.params)

    loss_fn, optimizer, state0, batches = setup(dropout=0.0)
    pstep = distributed.make_pmap_train_step(loss_fn, optimizer)
    results["pmap_losses"], pstate = run(pstep, distributed.pmap_state(state0), batches,
                                         put=distributed.pmap_batch)
    results["pmap_replicas_equal"] = np.asarray(all(
        bool(np.all(np.asarray(x) == np.asarray(x)[:1])) for x in jax.tree.leaves(pstate.params)))
    pstate = distributed.unpmap_state(pstate)
    results |= flat("pmap", pstate.params)
    results |= flat("pmap_carry", pstate.carry)
    np.savez(out / "devices.npz", **results)


def process_main(out: Path, process_id: int, num_processes: int, port: int) -> None:
    """One of several processes: each feeds its rows; all save one checkpoint together."""
    from jaxrnn import distributed, train

    distributed.initialize(f"localhost:{port}", num_processes, process_id, timeout_s=60)
    loss_fn, optimizer, state0, batches = setup(dropout=0.3)
    mesh = distributed.make_mesh()
    rows = distributed.process_rows(BATCH, mesh)
    step = distributed.make_train_step(loss_fn, optimizer, mesh)

    def put(batch):  # this process loads and feeds only its rows
        mine = jax.tree.map(lambda x: x[rows], batch)
        return distributed.put_batch(mine, mesh, process_local=True)

    losses, state = run(step, distributed.put_state(state0, mesh), batches, put=put)
    with train.Checkpointer(out / "ckpt_mp") as ckpt:
        ckpt.save(STEPS, state, {"processes": num_processes})
    results = {"losses": losses, "rows": np.asarray([rows.start, rows.stop]),
               "global_devices": np.asarray(jax.device_count()),
               "local_devices": np.asarray(jax.local_device_count())}
    results |= flat("params", state.params)
    np.savez(out / f"process{process_id}.npz", **results)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["devices", "process"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.mode == "devices":
        devices_main(args.out)
    else:
        process_main(args.out, args.process_id, args.num_processes, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
