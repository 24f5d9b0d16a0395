"""jaxrnn: functional recurrent neural networks in JAX.

Cells are pure functions for one example (``step(params, carry, x) -> (carry, y)``), driven over
time by :func:`jaxrnn.scan` and batched with ``jax.vmap``; layers stack them.
"""

__version__ = "0.1.0"

from jaxrnn.cells import (
    GRU,
    LSTM,
    Cell,
    Elman,
    ElmanState,
    GRUState,
    Initializer,
    LSTMState,
    Orthogonal,
    Params,
    PyTorchUniform,
    Uniform,
)
from jaxrnn.layers import StackedRNN, dropout
from jaxrnn.recurrence import scan

__all__ = [
    "__version__",
    "Cell", "Params", "Elman", "ElmanState", "GRU", "GRUState", "LSTM", "LSTMState",
    "Initializer", "Orthogonal", "PyTorchUniform", "Uniform",
    "StackedRNN", "dropout", "scan",
]
