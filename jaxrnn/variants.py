"""The recurrent-cell variant space used for gate ablations: names -> cell configurations.

Every variant is one line: a cell class and the fields that define it. The equations are in the
docstring of each class (:mod:`jaxrnn.cells.lstm_family`, :mod:`jaxrnn.cells.gru`,
:mod:`jaxrnn.cells.mgu`, :mod:`jaxrnn.cells.minimal`, :mod:`jaxrnn.cells.lru`)::

    >>> import jaxrnn.variants as variants
    >>> variants.names()[:3]
    ('vanilla', 'nig', 'nfg')
    >>> cell = variants.make("nfg", 128)          # LSTMFamily(128, forget_gate=False)
    >>> variants.make("vanilla", 128, forget_bias=1.0)
    >>> print(variants.describe("cifg"))

Groups: Greff et al. (2017)'s vanilla LSTM and its eight variants, the forget-bias and
layer-norm LSTMs, the GRU family (both reset conventions, MGU) and the linear recurrences
(minGRU, minLSTM, LRU, RG-LRU), which also run through :func:`jaxrnn.parallel.associative_scan`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxrnn.cells.gru import GRU
from jaxrnn.cells.lru import LRU, RGLRU
from jaxrnn.cells.lstm_family import LSTMFamily
from jaxrnn.cells.mgu import MGU
from jaxrnn.cells.minimal import MinGRU, MinLSTM

_GREFF = 'Greff et al. 2017, "LSTM: A Search Space Odyssey"'


class Variant(NamedTuple):
    """A registry entry: ``cls(hidden_size, **fields)`` builds the cell."""

    name: str
    family: str
    cls: type
    fields: dict[str, Any]
    description: str
    citation: str


_VARIANTS = (
    Variant("vanilla", "lstm", LSTMFamily, {},
            "LSTM with peepholes and output activation (Greff's vanilla)",
            f"{_GREFF}; Gers & Schmidhuber 2000 (peepholes)"),
    Variant("nig", "lstm", LSTMFamily, {"input_gate": False},
            "no input gate (i = 1)", _GREFF),
    Variant("nfg", "lstm", LSTMFamily, {"forget_gate": False},
            "no forget gate (f = 1)", _GREFF),
    Variant("nog", "lstm", LSTMFamily, {"output_gate": False},
            "no output gate (o = 1)", _GREFF),
    Variant("niaf", "lstm", LSTMFamily, {"input_activation": False},
            "no input activation function (block input g(x) = x)", _GREFF),
    Variant("noaf", "lstm", LSTMFamily, {"output_activation": False},
            "no output activation function (h(x) = x)", _GREFF),
    Variant("cifg", "lstm", LSTMFamily, {"coupled": True},
            "coupled input and forget gate (f = 1 - i)", _GREFF),
    Variant("np", "lstm", LSTMFamily, {"peepholes": False},
            "no peepholes (the PyTorch/cuDNN LSTM, jaxrnn.LSTM)", _GREFF),
    Variant("fgr", "lstm", LSTMFamily, {"full_gate_recurrence": True},
            "full gate recurrence (gates at t-1 feed all gates)", _GREFF),
    Variant("fb1", "lstm", LSTMFamily, {"peepholes": False, "forget_bias": 1.0},
            "no-peephole LSTM with forget bias 1",
            'Jozefowicz et al. 2015, "An Empirical Exploration of Recurrent Network '
            'Architectures"'),
    Variant("lnlstm", "lstm", LSTMFamily, {"peepholes": False, "layer_norm": True},
            "layer-normalised LSTM", 'Ba et al. 2016, "Layer Normalization"'),
    Variant("gru", "gru", GRU, {"reset_after": True},
            "GRU, reset gate after the recurrent matmul (cuDNN/PyTorch)",
            'Cho et al. 2014; Chung et al. 2014'),
    Variant("gru_cho", "gru", GRU, {"reset_after": False},
            "GRU, reset gate before the recurrent matmul (original)",
            'Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder"'),
    Variant("mgu", "gru", MGU, {},
            "minimal gated unit (one forget gate)",
            'Zhou et al. 2016, "Minimal Gated Unit for Recurrent Neural Networks"'),
    Variant("mingru", "linear", MinGRU, {},
            "minGRU: input-only gates, linear recurrence (log-space parallel scan)",
            'Feng et al. 2024, "Were RNNs All We Needed?"'),
    Variant("minlstm", "linear", MinLSTM, {},
            "minLSTM: normalised input-only gates, linear recurrence (log-space)",
            'Feng et al. 2024, "Were RNNs All We Needed?"'),
    Variant("lru", "linear", LRU, {},
            "linear recurrent unit: complex diagonal recurrence",
            'Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences"'),
    Variant("rglru", "linear", RGLRU, {},
            "real-gated linear recurrent unit of Griffin",
            'De et al. 2024, "Griffin: Mixing Gated Linear Recurrences with Local Attention"'),
)
_BY_NAME = {v.name: v for v in _VARIANTS}


def names(family: str | None = None) -> tuple[str, ...]:
    """Every variant name, vanilla first (or those of one family: lstm, gru, linear)."""
    families = sorted({v.family for v in _VARIANTS})
    if family is not None and family not in families:
        raise ValueError(f"variants.names: family={family!r}; expected one of {families}")
    return tuple(v.name for v in _VARIANTS if family is None or v.family == family)


def get(name: str) -> Variant:
    """The registry entry of ``name``; a ValueError listing the valid names otherwise."""
    if name not in _BY_NAME:
        raise ValueError(
            f"unknown variant name={name!r}; valid names: {', '.join(names())}"
        )
    return _BY_NAME[name]


def describe(name: str) -> str:
    """One line: the variant's description and its citation."""
    v = get(name)
    return f"{v.name}: {v.description} [{v.citation}]"


def make(name: str, hidden_size: int, **options: Any) -> Any:
    """Builds the cell of variant ``name``.

    Args:
      name: one of :func:`names`.
      hidden_size: the cell's hidden size.
      **options: further fields of the cell class (``forget_bias=1.0``,
        ``initializer="orthogonal"``, ...); a field that defines the variant cannot be changed.

    Returns:
      The cell (a frozen dataclass following the cell protocol).
    """
    v = get(name)
    valid = {f.name for f in dataclasses.fields(v.cls)} - {"hidden_size"}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(
            f"variants.make({name!r}): unknown options {unknown}; {v.cls.__name__} takes "
            f"{', '.join(sorted(valid))}"
        )
    clash = sorted(k for k in options if k in v.fields and options[k] != v.fields[k])
    if clash:
        raise ValueError(
            f"variants.make({name!r}): options {clash} would change what defines the variant "
            f"({v.fields}); pick another variant or build {v.cls.__name__} directly"
        )
    return v.cls(hidden_size, **{**v.fields, **options})


def parameter_count(cell, input_size: int) -> int:
    """Number of scalar parameters of ``cell`` for ``input_size`` (no arrays are allocated)."""
    shapes = jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.PRNGKey(0))
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(shapes)))
