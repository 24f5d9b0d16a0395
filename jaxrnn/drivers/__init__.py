"""Drivers: run a cell over a batch of sequences.

- :func:`scan` (:mod:`jaxrnn.drivers.scan`): any cell, one ``jax.lax.scan`` over time, with
  lengths, reverse, resets, rematerialisation and the strategies of :mod:`.strategy`.
- :func:`associative_scan` (:mod:`jaxrnn.drivers.parallel`): linear recurrences in
  O(log T) depth.
- :func:`chunkwise_scan` (:mod:`jaxrnn.drivers.chunkwise`): cells with a chunkwise-parallel
  form (mLSTM, DeltaNet, Gated DeltaNet).

:mod:`.inputs` holds the argument checks and the lengths/reverse/resets masking the three
share.
"""

from jaxrnn.drivers.chunkwise import chunkwise_scan, has_chunkwise_form
from jaxrnn.drivers.parallel import associative_scan, is_linear
from jaxrnn.drivers.scan import scan
from jaxrnn.drivers.strategy import STRATEGIES, Strategy, resolve_strategy

__all__ = [
    "STRATEGIES", "Strategy", "associative_scan", "chunkwise_scan", "has_chunkwise_form",
    "is_linear", "resolve_strategy", "scan",
]
