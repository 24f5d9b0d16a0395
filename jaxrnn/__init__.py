"""jaxrnn: functional recurrent neural networks in JAX.

Cells are pure functions for one example (``step(params, carry, x) -> (carry, y)``), driven over
time by :func:`jaxrnn.scan` and batched with ``jax.vmap``; layers stack them.
"""

__version__ = "0.1.0"

from jaxrnn import drivers, kernels, nn, variants
from jaxrnn.cells import (
    GRU,
    LRU,
    LSTM,
    MGU,
    MLSTM,
    RGLRU,
    SLSTM,
    Cell,
    DeltaNet,
    DeltaState,
    Elman,
    ElmanState,
    FunctionCell,
    GatedDeltaNet,
    GRUState,
    Initializer,
    LRUState,
    LSTMFamily,
    LSTMGateState,
    LSTMState,
    Mamba,
    MambaState,
    MGUState,
    MinGRU,
    MinimalState,
    MinLSTM,
    MLSTMState,
    Orthogonal,
    Params,
    PyTorchUniform,
    RGLRUState,
    SLSTMState,
    Uniform,
    cell_from_functions,
)
from jaxrnn.drivers import associative_scan, chunkwise_scan, scan
from jaxrnn.drivers import parallel as parallel
from jaxrnn.nn import (
    BidirectionalLayerState,
    LanguageModel,
    LayerState,
    StackedRNN,
    StackState,
    dropout,
)

__all__ = [
    "__version__",
    "Cell", "FunctionCell", "Params", "cell_from_functions",
    "StackState", "LayerState", "BidirectionalLayerState",
    "Elman", "ElmanState", "GRU", "GRUState", "LSTM", "LSTMState",
    "Initializer", "Orthogonal", "PyTorchUniform", "Uniform",
    "StackedRNN", "dropout", "scan",
    "LSTMFamily", "LSTMGateState", "MGU", "MGUState", "MinGRU", "MinLSTM", "MinimalState",
    "LRU", "LRUState", "RGLRU", "RGLRUState", "associative_scan", "parallel", "variants",
    "SLSTM", "SLSTMState", "MLSTM", "MLSTMState", "DeltaNet", "GatedDeltaNet", "DeltaState",
    "Mamba", "MambaState", "chunkwise_scan", "LanguageModel",
    "drivers", "kernels", "nn", "decoding", "distributed", "interop", "train", "data",
]

# Subpackages imported on first use (PEP 562), so ``import jaxrnn`` stays light and torch,
# flax and orbax load only when their parts are used: ``jaxrnn.interop.from_torch(...)``.
# The last four names are the module paths of earlier versions (CHANGELOG.md).
_LAZY = {
    "decoding": "jaxrnn.decoding",
    "distributed": "jaxrnn.distributed",
    "interop": "jaxrnn.interop",
    "train": "jaxrnn.train",
    "data": "jaxrnn.data",
    "sampling": "jaxrnn.decoding",
    "attention": "jaxrnn.nn.attention",
    "losses": "jaxrnn.nn.losses",
    "language_model": "jaxrnn.nn.language_model",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxrnn' has no attribute {name!r}")
    import importlib

    value = importlib.import_module(module)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
