"""Decoding from a step function ``step_fn(state, tokens [N]) -> (state, logits [N, V])``.

- :mod:`.sampling`: temperature, top-k and top-p filters, :func:`generate`.
- :mod:`.beam`: :func:`beam_search` with the length penalty of Wu et al. (2016).
"""

from jaxrnn.decoding.beam import BeamResult, beam_search
from jaxrnn.decoding.sampling import filter_logits, generate, sample_logits

__all__ = ["BeamResult", "beam_search", "filter_logits", "generate", "sample_logits"]
