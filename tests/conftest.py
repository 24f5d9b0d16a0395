"""Test configuration: strict dtype and rank promotion, as equinox's tests do.

jaxrnn's own code must pass under both. Third-party code that does not (optax's adam and
schedules, today) is called inside ``jax.numpy_dtype_promotion("standard")`` where needed.
"""

import jax

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
