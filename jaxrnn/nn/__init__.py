"""Networks built from cells: stacks, dropout, attention, losses and the language model.

- :mod:`.stack`: :class:`StackedRNN` (layers, bidirectional, dropout between layers) and
  :func:`dropout`.
- :mod:`.attention`: additive (Bahdanau) and dot-product (Luong) attention.
- :mod:`.losses`: memory-lean cross-entropies.
- :mod:`.language_model`: :class:`LanguageModel` (embedding, stack, softmax; Zaremba et al.).
- :mod:`.stream_eval`: a language model evaluated over a whole split, state carried through.
- :mod:`.lm_run`: a trained language model back from its run folder, and sampling from it.
"""

from jaxrnn.nn import attention, losses
from jaxrnn.nn.language_model import LanguageModel
from jaxrnn.nn.lm_run import (
    LanguageModelRun,
    build_language_model,
    load_language_model_run,
    write_language_model_files,
)
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
    "BidirectionalLayerState", "LanguageModel", "LanguageModelRun", "build_language_model",
    "load_language_model_run", "write_language_model_files", "LayerState", "StackState",
    "StackedRNN",
    "attention", "dropout", "linear_cross_entropy", "losses", "stream_evaluator",
    "token_cross_entropy",
]
