"""Test configuration: strict dtype and rank promotion, as equinox's tests do.

jaxrnn's own code must pass under both. Third-party code that does not (optax's adam and
schedules, today) is called inside ``jax.numpy_dtype_promotion("standard")`` where needed.

The tests compile at XLA's LLVM optimisation level 0 (set before JAX starts its backend, and
inherited by the scripts the tests run): the suite is compile-bound on tiny shapes, and the
compiled programs compute the same functions.
"""

import os

if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
