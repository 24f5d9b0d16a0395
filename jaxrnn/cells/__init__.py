"""Recurrent cells: pure functions for one example. See :mod:`jaxrnn.cells.base`."""

from jaxrnn.cells.base import Cell, Params
from jaxrnn.cells.elman import Elman, ElmanState
from jaxrnn.cells.gru import GRU, GRUState
from jaxrnn.cells.initializers import Initializer, Orthogonal, PyTorchUniform, Uniform
from jaxrnn.cells.lstm import LSTM, LSTMState

__all__ = [
    "Cell", "Params", "Elman", "ElmanState", "GRU", "GRUState", "LSTM", "LSTMState",
    "Initializer", "Orthogonal", "PyTorchUniform", "Uniform",
]
