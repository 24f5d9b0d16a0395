"""Networks built from cells: stacks, dropout, attention, losses and the language model.

- :mod:`.stack`: :class:`StackedRNN` (layers, bidirectional, dropout between layers) and
  :func:`dropout`.
- :mod:`.attention`: additive (Bahdanau) and dot-product (Luong) attention.
- :mod:`.losses`: memory-lean cross-entropies.
- :mod:`.language_model`: :class:`LanguageModel` (embedding, stack, softmax; Zaremba et al.).
- :mod:`.stream_eval`: a language model evaluated over a whole split, state carried through.
"""

from jaxrnn.nn import attention, losses
from jaxrnn.nn.language_model import LanguageModel
from jaxrnn.nn.losses import linear_cross_entropy, token_cross_entropy
from jaxrnn.nn.stack import (
    BidirectionalLayerState,
    LayerState,
    StackedRNN,
    StackState,
    dropout,
)
from jaxrnn.nn.stream_eval import stream_evaluator

__all__ = [
    "BidirectionalLayerState", "LanguageModel", "LayerState", "StackState", "StackedRNN",
    "attention", "dropout", "linear_cross_entropy", "losses", "stream_evaluator",
    "token_cross_entropy",
]
