"""jaxrnn: functional recurrent neural networks in JAX.

Cells are pure functions for one example (``step(params, carry, x) -> (carry, y)``), driven over
time by :func:`jaxrnn.scan` and batched with ``jax.vmap``; layers stack them.
"""

__version__ = "0.1.0"

from jaxrnn import parallel, variants
from jaxrnn.cells import (
    GRU,
    LRU,
    LSTM,
    MGU,
    RGLRU,
    Cell,
    Elman,
    ElmanState,
    FunctionCell,
    GRUState,
    Initializer,
    LRUState,
    LSTMFamily,
    LSTMGateState,
    LSTMState,
    MGUState,
    MinGRU,
    MinimalState,
    MinLSTM,
    Orthogonal,
    Params,
    PyTorchUniform,
    RGLRUState,
    Uniform,
    cell_from_functions,
)
from jaxrnn.layers import BidirectionalLayerState, LayerState, StackedRNN, StackState, dropout
from jaxrnn.parallel import associative_scan
from jaxrnn.recurrence import scan

__all__ = [
    "__version__",
    "Cell", "FunctionCell", "Params", "cell_from_functions",
    "StackState", "LayerState", "BidirectionalLayerState",
    "Elman", "ElmanState", "GRU", "GRUState", "LSTM", "LSTMState",
    "Initializer", "Orthogonal", "PyTorchUniform", "Uniform",
    "StackedRNN", "dropout", "scan",
    "LSTMFamily", "LSTMGateState", "MGU", "MGUState", "MinGRU", "MinLSTM", "MinimalState",
    "LRU", "LRUState", "RGLRU", "RGLRUState", "associative_scan", "parallel", "variants",
]
