"""Real univariate time series shipped with statsmodels, gap filling, sliding windows, baselines.

Series (no download; statsmodels carries the files):

* ``"co2"``: weekly atmospheric CO2 at Mauna Loa, March 1958 - December 2001, in ppm
  (2,284 weeks, 59 of them missing; season 52 weeks). Keeling et al., the Scripps CO2 program.
* ``"sunspots"``: yearly mean sunspot numbers, 1700-2008 (309 years; the solar cycle is
  about 11 years).

Windows: a forecast *origin* ``t`` is the index of the first value to predict; its input is
``values[t - input_len:t]`` and its target ``values[t:t + horizon]``. The baselines of
Hyndman & Athanasopoulos, "Forecasting: Principles and Practice" (section 5.2), for the
``k``-th step ahead (``k = 1..horizon``):

    naive:            y_hat[t + k - 1] = y[t - 1]
    seasonal naive:   y_hat[t + k - 1] = y[t + k - 1 - m * (floor((k - 1) / m) + 1)]

with ``m`` the season length: the last observed value of the same season.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxrnn.data.errors import DataError

__all__ = [
    "SERIES",
    "Series",
    "fill_gaps",
    "load_series",
    "naive_forecast",
    "seasonal_naive_forecast",
    "sliding_windows",
]

SERIES: dict[str, str] = {
    "co2": "weekly Mauna Loa CO2 (ppm), 1958-2001, gaps filled by linear interpolation",
    "sunspots": "yearly mean sunspot number, 1700-2008",
}
"""name -> description of the series :func:`load_series` knows."""


class Series(NamedTuple):
    """A univariate series and what is needed to forecast and plot it.

    Attributes:
        name: the key in :data:`SERIES`.
        values: float32 ``[T]``, without gaps.
        times: float64 ``[T]``, the time of each value in (fractional) years, for plots.
        filled: bool ``[T]``, True where a missing value was filled in.
        period: the season length ``m`` in steps (52 weeks, 11 years).
        unit: unit of ``values``, for plot labels.
    """

    name: str
    values: np.ndarray
    times: np.ndarray
    filled: np.ndarray
    period: int
    unit: str


def fill_gaps(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fills NaNs by linear interpolation between the nearest observed neighbours.

    Leading and trailing NaNs take the first and last observed value.

    Args:
        values: a 1-D float array, NaN where a value is missing.

    Returns:
        ``(filled, mask)``: ``filled`` has the dtype of ``values`` and no NaN; ``mask`` is
        True where a value was filled in.

    Raises:
        ValueError: if ``values`` is not 1-D floating point or holds no observed value.
    """
    values = np.asarray(values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.floating):
        raise ValueError(
            f"fill_gaps: values has shape {values.shape} and dtype {values.dtype}; expected a "
            "1-D float array with NaN for missing values"
        )
    mask = np.isnan(values)
    if mask.all():
        raise ValueError(f"fill_gaps: all {values.size} values are NaN; nothing to interpolate")
    steps = np.arange(values.size)
    filled = values.copy()
    filled[mask] = np.interp(steps[mask], steps[~mask], values[~mask])
    return filled, mask


def load_series(name: str) -> Series:
    """Loads one of the :data:`SERIES` from statsmodels' bundled datasets.

    Args:
        name: ``"co2"`` or ``"sunspots"``.

    Returns:
        The :class:`Series`, gaps filled (see :func:`fill_gaps`).

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
        DataError: if statsmodels is missing or its data cannot be read.
    """
    if name not in SERIES:
        raise ValueError(f"load_series: unknown name={name!r}; valid names: {', '.join(SERIES)}")
    try:
        import statsmodels.api as sm

        if name == "co2":
            frame = sm.datasets.co2.load_pandas().data
            raw = frame["co2"].to_numpy(dtype=np.float64)
            index = frame.index
            times = (index.year + (index.day_of_year - 1) / 365.25).to_numpy(dtype=np.float64)
            period, unit = 52, "ppm"
        else:
            frame = sm.datasets.sunspots.load_pandas().data
            raw = frame["SUNACTIVITY"].to_numpy(dtype=np.float64)
            times = frame["YEAR"].to_numpy(dtype=np.float64)
            period, unit = 11, "sunspot number"
    except (ImportError, OSError, KeyError) as e:
        raise DataError(
            f"load_series: cannot read the {name!r} series from statsmodels ({e}); "
            "install statsmodels (pip install statsmodels)"
        ) from e
    values, mask = fill_gaps(raw)
    return Series(name, values.astype(np.float32), times, mask, period, unit)


def _check_series(where: str, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{where}: values has shape {values.shape}; expected a 1-D series [T]")
    return values


def _check_positive(where: str, name: str, value) -> None:
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{where}: {name} must be a positive int; got {value!r}")


def sliding_windows(
    values: np.ndarray,
    input_len: int,
    horizon: int,
    *,
    start: int | None = None,
    stop: int | None = None,
    stride: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (input, target) window whose targets lie in ``values[start:stop]``.

    Args:
        values: the series ``[T]``.
        input_len: steps of history in each input (L).
        horizon: steps to forecast (H).
        start: first index a target may have; default ``input_len`` (the first origin with a
            full history). Values before ``start`` may still appear in inputs.
        stop: one past the last index a target may have; default ``T``.
        stride: distance between consecutive origins.

    Returns:
        ``(inputs [N, L], targets [N, H], origins [N])`` with ``origins`` int64 and, for each
        window, ``inputs = values[o - L:o]`` and ``targets = values[o:o + H]``.

    Raises:
        ValueError: on non-positive sizes, a span outside the series, or a span that holds
            no full window.
    """
    where = "sliding_windows"
    values = _check_series(where, values)
    for name, value in (("input_len", input_len), ("horizon", horizon), ("stride", stride)):
        _check_positive(where, name, value)
    size = values.shape[0]
    start = input_len if start is None else max(int(start), input_len)
    stop = size if stop is None else int(stop)
    if not 0 <= stop <= size:
        raise ValueError(f"{where}: stop={stop} outside the series of length {size}")
    origins = np.arange(start, stop - horizon + 1, stride, dtype=np.int64)
    if origins.size == 0:
        raise ValueError(
            f"{where}: no window of input_len={input_len} and horizon={horizon} has its targets "
            f"in [{start}, {stop}) of a series of length {size}; need stop - max(start, "
            f"input_len) >= horizon"
        )
    inputs = values[origins[:, None] + np.arange(-input_len, 0)]
    targets = values[origins[:, None] + np.arange(horizon)]
    return inputs, targets, origins


def _check_origins(where: str, origins, horizon: int, size: int, lowest: int) -> np.ndarray:
    _check_positive(where, "horizon", horizon)
    origins = np.asarray(origins)
    if origins.ndim != 1 or not np.issubdtype(origins.dtype, np.integer):
        raise ValueError(
            f"{where}: origins has shape {origins.shape} and dtype {origins.dtype}; expected "
            "1-D integer indices"
        )
    if origins.size and (origins.min() < lowest or origins.max() + horizon > size):
        raise ValueError(
            f"{where}: origins lie in [{origins.min()}, {origins.max()}]; with horizon="
            f"{horizon} they must lie in [{lowest}, {size - horizon}] for a series of length "
            f"{size}"
        )
    return origins


def naive_forecast(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The last observed value, repeated: ``[N, H]`` with row i all ``values[origins[i] - 1]``.

    Raises:
        ValueError: on malformed arguments or origins without one past value.
    """
    values = _check_series("naive_forecast", values)
    origins = _check_origins("naive_forecast", origins, horizon, values.shape[0], 1)
    return np.repeat(values[origins - 1][:, None], horizon, axis=1)


def seasonal_naive_forecast(
    values: np.ndarray, origins: np.ndarray, horizon: int, period: int
) -> np.ndarray:
    """The value one season earlier that was already observed at the origin: ``[N, H]``.

    Step ``k`` (1-based) of origin ``t`` is ``values[t + k - 1 - m * (floor((k - 1) / m) +
    1)]``, with ``m = period`` (Hyndman & Athanasopoulos, section 5.2).

    Raises:
        ValueError: on malformed arguments or origins with less than one season of history.
    """
    where = "seasonal_naive_forecast"
    values = _check_series(where, values)
    _check_positive(where, "period", period)
    origins = _check_origins(where, origins, horizon, values.shape[0], period)
    steps = np.arange(horizon)
    back = period * (steps // period + 1)
    return values[origins[:, None] + steps - back]
