"""Interoperability with other frameworks: PyTorch weights (:mod:`jaxrnn.interop.torch`) and
Flax modules (:mod:`jaxrnn.interop.flax_modules`).

Importing this package imports neither torch nor flax: each name below is looked up in its
submodule on first use (PEP 562 module ``__getattr__``), so ``import jaxrnn.interop`` is cheap
and works where torch is not installed.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule that defines it.
_LAZY: dict[str, str] = {
    "from_torch": "jaxrnn.interop.torch",
    "to_torch": "jaxrnn.interop.torch",
    "TorchLikeRNN": "jaxrnn.interop.torch",
    **dict.fromkeys(
        [
            "CellModule", "RNNModule", "NNXCell", "nnx_cell",
        ],
        "jaxrnn.interop.flax_modules",
    ),
    **dict.fromkeys(
        [
            "from_flax_lstm", "to_flax_lstm", "from_flax_gru", "to_flax_gru",
            "lstm_carry_from_flax", "lstm_carry_to_flax",
        ],
        "jaxrnn.interop.flax_convert",
    ),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxrnn.interop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
