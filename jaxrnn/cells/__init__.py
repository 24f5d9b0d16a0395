"""Recurrent cells: pure functions for one example. See :mod:`jaxrnn.cells.base`."""

from jaxrnn.cells.base import Cell, FunctionCell, Params, cell_from_functions, output_size
from jaxrnn.cells.elman import Elman, ElmanState
from jaxrnn.cells.gru import GRU, GRUState
from jaxrnn.cells.initializers import Initializer, Orthogonal, PyTorchUniform, Uniform
from jaxrnn.cells.lru import LRU, RGLRU, LRUState, RGLRUState
from jaxrnn.cells.lstm import LSTM, LSTMState
from jaxrnn.cells.lstm_family import LSTMFamily, LSTMGateState
from jaxrnn.cells.mgu import MGU, MGUState
from jaxrnn.cells.minimal import MinGRU, MinimalState, MinLSTM

__all__ = [
    "Cell", "FunctionCell", "Params", "cell_from_functions", "output_size",
    "Elman", "ElmanState", "GRU", "GRUState", "LSTM", "LSTMState",
    "Initializer", "Orthogonal", "PyTorchUniform", "Uniform",
    "LSTMFamily", "LSTMGateState", "MGU", "MGUState", "MinGRU", "MinLSTM", "MinimalState",
    "LRU", "LRUState", "RGLRU", "RGLRUState",
]
