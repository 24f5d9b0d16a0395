#!/usr/bin/env python
"""Multi-step time-series forecasting with an LSTM on a real series, against naive baselines.

    python experiments/time_series.py --out runs/co2                  # weekly Mauna Loa CO2
    python experiments/time_series.py --series sunspots --out runs/sunspots
    python experiments/time_series.py --horizon 26 --input-len 156 --out runs/co2_h26
    python experiments/time_series.py --smoke --out runs/ts_smoke     # seconds

Data: a series that ships with statsmodels (no download), see jaxrnn.data.series: ``co2``
(weekly, 1958-2001, its 59 missing weeks filled by linear interpolation; season 52 weeks) or
``sunspots`` (yearly, 1700-2008; cycle ~11 years). Split in time: the first 70% of the
series are training targets, the next 10% validation, the last 20% the test span.

Sliding windows: from each origin t the model reads the last --input-len values and forecasts
the next --horizon values at once (direct multi-step forecasting). A window is in a split when
all its targets are; its inputs may reach back into earlier splits (that history is known at
the origin).

Model: LSTM stack over the window -> last output -> linear layer -> horizon values. Each input
step has two features: the value standardised with the training mean and std, and the value
minus the window's last value, divided by ``scale``, the std of the training targets' change
from the last input value. The head predicts that change, so the forecast is
``last + scale * output``: level-free, so a trending series (CO2) does not leave the range
seen in training. Loss: mean squared error of the scaled change. Adam, cosine-decayed learning
rate, gradient clipping.

Baselines on exactly the same test windows (Hyndman & Athanasopoulos, "Forecasting:
Principles and Practice", 5.2): naive (the last value) and seasonal naive (the value one
season earlier). The model must beat both in MAE.

Outputs in --out: config.json, metrics.jsonl, loss.png (training/validation loss),
forecast.png (test span: truth against the H-step-ahead forecasts, sample trajectories, MAE per
step ahead), results.json (mae, rmse, naive_mae, seasonal_naive_mae, their RMSEs,
mae_by_step, ...), checkpoints/. Exit codes: 2 for bad arguments or data, 3 for a non-finite
loss.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import harness
import jaxrnn
from harness import positive_float, positive_int
from jaxrnn import train
from jaxrnn.data import DataError
from jaxrnn.data.series import (
    SERIES,
    load_series,
    naive_forecast,
    seasonal_naive_forecast,
    sliding_windows,
)

# Per-series defaults, and --smoke's.
PRESETS: dict[str, dict] = {
    "co2": dict(input_len=104, horizon=12, hidden_size=64, num_layers=1, epochs=40,
                batch_size=64, lr=3e-3),
    "sunspots": dict(input_len=33, horizon=5, hidden_size=32, num_layers=1, epochs=150,
                     batch_size=16, lr=3e-3),
    "smoke": dict(input_len=52, horizon=6, hidden_size=16, num_layers=1, epochs=2,
                  batch_size=64, lr=1e-2),
}
HYPERPARAMETERS = {
    "input_len": (positive_int, "steps of history per window"),
    "horizon": (positive_int, "steps forecast from each origin"),
    "hidden_size": (positive_int, "LSTM size"),
    "num_layers": (positive_int, "stacked LSTM layers"),
    "epochs": (positive_int, "passes over the training windows"),
    "batch_size": (positive_int, "windows per update"),
    "lr": (positive_float, "peak Adam learning rate (cosine decay)"),
}
VALID_FRACTION, TEST_FRACTION = 0.1, 0.2
EVAL_BATCH = 256


def parse_args(argv=None):
    p = harness.parser(__file__, __doc__, smoke="tiny model, 2 epochs: seconds")
    p.add_argument("--series", choices=sorted(SERIES), default="co2",
                   help="statsmodels series: " + "; ".join(f"{k}: {v}" for k, v in SERIES.items()))
    harness.preset_flags(p, PRESETS, HYPERPARAMETERS)
    p.add_argument("--clip-norm", type=positive_float, default=1.0,
                   help="gradient clipping at this global norm")
    args = harness.parse(p, argv)
    harness.fill_presets(args, PRESETS["smoke" if args.smoke else args.series], HYPERPARAMETERS)
    return args


def split_points(size: int) -> tuple[int, int]:
    """First target index of the validation and of the test split."""
    test_start = int(round(size * (1.0 - TEST_FRACTION)))
    valid_start = int(round(size * (1.0 - TEST_FRACTION - VALID_FRACTION)))
    return valid_start, test_start


class Normaliser:
    """The two input features and the target scaling described in the module docstring."""

    def __init__(self, train_values: np.ndarray, train_inputs: np.ndarray,
                 train_targets: np.ndarray):
        self.mean = np.float32(train_values.mean())
        self.std = np.float32(max(train_values.std(), 1e-6))
        change = train_targets - train_inputs[:, -1:]
        self.scale = np.float32(max(change.std(), 1e-6))

    def features(self, inputs: np.ndarray) -> np.ndarray:
        """[N, L] values -> [N, L, 2] float32 features."""
        level = (inputs - self.mean) / self.std
        change = (inputs - inputs[:, -1:]) / self.scale
        return np.stack([level, change], axis=-1).astype(np.float32)

    def targets(self, inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        return ((targets - inputs[:, -1:]) / self.scale).astype(np.float32)

    def forecast(self, inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        return inputs[:, -1:] + self.scale * outputs


def build_model(args):
    rnn = jaxrnn.StackedRNN(jaxrnn.LSTM(args.hidden_size, forget_bias=1.0),
                            num_layers=args.num_layers)

    def init(key):
        k_rnn, k_head = jax.random.split(key)
        return {"rnn": rnn.init(k_rnn, 2),
                "head": harness.dense_init(k_head, rnn.output_size, args.horizon)}

    def apply(params, features):
        ys, _ = rnn.apply(params["rnn"], features)
        return harness.dense(params["head"], ys[:, -1])

    return init, apply


def errors(forecast: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    diff = (forecast - truth).astype(np.float64)
    return {"mae": float(np.abs(diff).mean()), "rmse": float(np.sqrt((diff**2).mean()))}


def plot_forecast(path: Path, series, origins, truth, forecasts: dict[str, np.ndarray],
                  horizon: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 10))
    FigureCanvasAgg(fig)
    top, middle, bottom = fig.subplots(3, 1)
    times, values = series.times, series.values
    last = origins + horizon - 1  # the time each H-step-ahead forecast is for
    top.plot(times[last], truth[:, -1], color="black", lw=1.5, label="truth")
    styles = {"lstm": ("C0", 1.2), "naive": ("C1", 0.8), "seasonal naive": ("C2", 0.8)}
    for name, forecast in forecasts.items():
        color, lw = styles[name]
        top.plot(times[last], forecast[:, -1], color=color, lw=lw, label=name)
    top.set_title(f"{series.name}: {horizon}-step-ahead forecasts over the test span")
    top.set_ylabel(series.unit)
    top.legend()
    # A few full trajectories from evenly spaced origins.
    span = slice(max(origins[0] - 3 * horizon, 0), origins[-1] + horizon)
    middle.plot(times[span], values[span], color="black", lw=1.0, label="truth")
    picks = np.linspace(0, len(origins) - 1, 6).round().astype(int)
    for j, i in enumerate(picks):
        steps = origins[i] + np.arange(horizon)
        middle.plot(times[steps], forecasts["lstm"][i], color="C0", lw=2.0,
                    label="lstm trajectory" if j == 0 else None)
        middle.axvline(times[origins[i]], color="grey", lw=0.5, ls=":")
    middle.set_title("sample forecast trajectories (dotted: origin)")
    middle.set_ylabel(series.unit)
    middle.legend()
    steps_ahead = np.arange(1, horizon + 1)
    for name, forecast in forecasts.items():
        bottom.plot(steps_ahead, np.abs(forecast - truth).mean(axis=0), marker="o",
                    color=styles[name][0], label=name)
    bottom.set_xlabel("steps ahead")
    bottom.set_ylabel(f"test MAE ({series.unit})")
    bottom.legend()
    for ax in (top, middle, bottom):
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    args = parse_args(argv)
    with harness.start(args) as run:
        return experiment(args, run)


def experiment(args, run) -> int:
    try:
        series = load_series(args.series)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    values = series.values
    valid_start, test_start = split_points(values.size)
    try:
        x_train, y_train, _ = sliding_windows(values, args.input_len, args.horizon,
                                              stop=valid_start)
        x_valid, y_valid, _ = sliding_windows(values, args.input_len, args.horizon,
                                              start=valid_start, stop=test_start)
        # Test origins need one season of history for the seasonal-naive baseline too.
        x_test, y_test, test_origins = sliding_windows(
            values, args.input_len, args.horizon, start=max(test_start, series.period))
    except ValueError as err:
        print(f"error: --input-len {args.input_len} / --horizon {args.horizon} do not fit the "
              f"{args.series} series ({values.size} steps, splits at {valid_start} and "
              f"{test_start}): {err}", file=sys.stderr)
        return 2
    if x_train.shape[0] < args.batch_size:
        print(f"error: --batch-size {args.batch_size} exceeds the {x_train.shape[0]} training "
              "windows", file=sys.stderr)
        return 2
    norm = Normaliser(values[:valid_start], x_train, y_train)
    train_x, train_y = norm.features(x_train), norm.targets(x_train, y_train)
    valid_x, valid_y = norm.features(x_valid), norm.targets(x_valid, y_valid)

    steps_per_epoch = x_train.shape[0] // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    schedule = optax.cosine_decay_schedule(args.lr, total_steps, alpha=0.05)
    optimizer = train.make_optimizer("adam", schedule, clip_norm=args.clip_norm)
    run.write_config({"steps_per_epoch": steps_per_epoch, "train_windows": x_train.shape[0],
                      "valid_windows": x_valid.shape[0], "test_windows": x_test.shape[0],
                      "period": series.period, "filled_values": int(series.filled.sum())})
    print(f"{args.series}: {values.size} steps ({int(series.filled.sum())} filled), "
          f"windows train/valid/test {x_train.shape[0]}/{x_valid.shape[0]}/{x_test.shape[0]}, "
          f"input {args.input_len}, horizon {args.horizon}, {steps_per_epoch} steps/epoch, "
          f"{args.epochs} epochs")

    init, apply = build_model(args)
    jitted = jax.jit(apply)

    def predict(params, features, batch_size=EVAL_BATCH):
        """Scaled forecasts [N, H], in fixed-size chunks (one compilation for every split)."""
        n = features.shape[0]
        rows = np.minimum(np.arange(-(-n // batch_size) * batch_size), n - 1)
        out = [np.asarray(jitted(params, features[rows[i:i + batch_size]]))
               for i in range(0, rows.size, batch_size)]
        return np.concatenate(out)[:n]

    def loss_fn(params, carry, batch, key):
        x, y = batch
        return jnp.mean(jnp.square(apply(params, x) - y)), (carry, {})

    def get_batch(epoch, index):
        rows = train.minibatches(train_x.shape[0], args.batch_size, seed=args.seed,
                                 epoch=epoch)[index]
        return train_x[rows], train_y[rows]

    def validate(state, epoch):
        scaled = predict(state.params, valid_x)
        forecast = norm.forecast(x_valid, scaled)
        metrics = {"loss": float(np.mean((scaled - valid_y) ** 2)), **errors(forecast, y_valid)}
        print(f"epoch {epoch + 1}/{args.epochs}: valid MAE {metrics['mae']:.3f} {series.unit}, "
              f"RMSE {metrics['rmse']:.3f}", flush=True)
        return metrics

    state = train.TrainState.create(jax.jit(init)(jax.random.PRNGKey(args.seed)), optimizer,
                                    seed=args.seed)
    result = harness.fit(
        run, state=state, train_step=train.make_train_step(loss_fn, optimizer),
        get_batch=get_batch, steps_per_epoch=steps_per_epoch, num_epochs=args.epochs,
        evaluate_fn=validate, log_every=max(steps_per_epoch // 2, 1),
        extra_metrics=train.lr_metric(schedule), verbose=False,
    )
    if isinstance(result, int):
        return result
    state, summary = result

    t0 = time.perf_counter()
    forecast = norm.forecast(x_test, predict(state.params, norm.features(x_test)))
    naive = naive_forecast(values, test_origins, args.horizon)
    seasonal = seasonal_naive_forecast(values, test_origins, args.horizon, series.period)
    model_err, naive_err = errors(forecast, y_test), errors(naive, y_test)
    seasonal_err = errors(seasonal, y_test)
    beats = model_err["mae"] < min(naive_err["mae"], seasonal_err["mae"])
    results = {
        "mae": model_err["mae"],
        "rmse": model_err["rmse"],
        "naive_mae": naive_err["mae"],
        "naive_rmse": naive_err["rmse"],
        "seasonal_naive_mae": seasonal_err["mae"],
        "seasonal_naive_rmse": seasonal_err["rmse"],
        "beats_both_baselines": bool(beats),
        "mae_by_step": np.abs(forecast - y_test).mean(axis=0).tolist(),
        "naive_mae_by_step": np.abs(naive - y_test).mean(axis=0).tolist(),
        "seasonal_naive_mae_by_step": np.abs(seasonal - y_test).mean(axis=0).tolist(),
        "valid_mae": summary["last"].get("valid", {}).get("mae"),
        "series": args.series,
        "unit": series.unit,
        "period": series.period,
        "horizon": args.horizon,
        "input_len": args.input_len,
        "test_windows": int(x_test.shape[0]),
        "test_span": [float(series.times[test_origins[0]]),
                      float(series.times[test_origins[-1] + args.horizon - 1])],
        "steps": int(state.step),
        "wall_s": summary.get("wall_s"),
        "final_eval_s": time.perf_counter() - t0,
        "smoke": args.smoke,
    }
    run.write_results(results)
    plot_forecast(run.out / "forecast.png", series, test_origins, y_test,
                  {"lstm": forecast, "naive": naive, "seasonal naive": seasonal}, args.horizon)
    harness.plot_curves(run, "loss.png", key="loss", title=f"{args.series}: scaled-change MSE")
    unit = series.unit
    print(f"test MAE {results['mae']:.3f} {unit} (RMSE {results['rmse']:.3f}) over "
          f"{x_test.shape[0]} windows, horizon {args.horizon}")
    print(f"   baselines on the same windows: naive MAE {results['naive_mae']:.3f}, seasonal "
          f"naive MAE {results['seasonal_naive_mae']:.3f}   (target: below both) -> "
          + ("beats both" if beats else "does NOT beat both"))
    return 0


if __name__ == "__main__":
    harness.main(main)
