"""The open registry of recurrent-cell variants for gate ablations: names -> cell factories.

A variant is a name and a factory ``factory(hidden_size, **options) -> cell``. The built-in ones
are one-line configurations of a cell class (:func:`configure`); the equations are in the
docstring of each class (:mod:`jaxrnn.cells.lstm_family`, :mod:`jaxrnn.cells.gru`,
:mod:`jaxrnn.cells.mgu`, :mod:`jaxrnn.cells.minimal`, :mod:`jaxrnn.cells.lru`,
:mod:`jaxrnn.cells.mamba`, :mod:`jaxrnn.cells.xlstm`, :mod:`jaxrnn.cells.delta`)::

    >>> import jaxrnn.variants as variants
    >>> variants.names()[:3]
    ('vanilla', 'nig', 'nfg')
    >>> cell = variants.make("nfg", 128)          # LSTMFamily(128, forget_gate=False)
    >>> variants.make("vanilla", 128, forget_bias=1.0)
    >>> print(variants.describe("cifg"))

Your own cell joins the same space, and then every experiment that takes variant names takes it::

    variants.register("mycell", MyCell, description="...", citation="Me et al. 2026")
    variants.register("mycell_nb", variants.configure(MyCell, use_bias=False))
    variants.make("MyCell", 64)                    # names are case-insensitive
    variants.make("mypkg.cells:MyCell", 64)        # or a "module:attr" spec, imported on demand

Groups: Greff et al. (2017)'s vanilla LSTM and its eight variants, the forget-bias and
layer-norm LSTMs, the GRU family (both reset conventions, MGU), the linear recurrences
(minGRU, minLSTM, LRU, RG-LRU, Mamba's S6), which also run through
:func:`jaxrnn.associative_scan`, and the "modern" family (sLSTM, mLSTM, DeltaNet, Gated
DeltaNet; the last three also run through :func:`jaxrnn.chunkwise_scan`). ``<name>_neg`` is the
negative-eigenvalue version of an input-dependent linear recurrence (Grazzi et al., 2025).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxrnn.cells.base import check_cell
from jaxrnn.cells.delta import DeltaNet, GatedDeltaNet
from jaxrnn.cells.gru import GRU
from jaxrnn.cells.lru import LRU, RGLRU
from jaxrnn.cells.lstm_family import LSTMFamily
from jaxrnn.cells.mamba import Mamba
from jaxrnn.cells.mgu import MGU
from jaxrnn.cells.minimal import MinGRU, MinLSTM
from jaxrnn.cells.xlstm import MLSTM, SLSTM

_GREFF = 'Greff et al. 2017, "LSTM: A Search Space Odyssey"'
_GRAZZI = ('Grazzi et al. 2025, "Unlocking State-Tracking in Linear RNNs Through Negative '
           'Eigenvalues"')
_XLSTM = 'Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"'
_DELTA = ('Yang et al. 2024, "Parallelizing Linear Transformers with the Delta Rule over '
          'Sequence Length"; Schlag et al. 2021')
_GATED_DELTA = 'Yang et al. 2025, "Gated Delta Networks: Improving Mamba2 with Delta Rule"'
_MAMBA = 'Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"'


class Variant(NamedTuple):
    """A registry entry: ``factory(hidden_size, **options)`` builds the cell."""

    name: str
    factory: Callable[..., Any]
    family: str
    description: str
    citation: str


class Configuration:
    """A factory ``cls(hidden_size, **{**fields, **options})`` (see :func:`configure`).

    Options that define the variant (those in ``fields``) cannot be changed, and options that
    ``cls`` does not take are rejected, both with a ValueError naming them.
    """

    def __init__(self, cls: type, **fields: Any):
        self.cls, self.fields = cls, dict(fields)

    def __call__(self, hidden_size: int, **options: Any) -> Any:
        where = f"{self.cls.__name__} variant {self.fields}"
        if dataclasses.is_dataclass(self.cls):
            valid = {f.name for f in dataclasses.fields(self.cls)} - {"hidden_size"}
            unknown = sorted(set(options) - valid)
            if unknown:
                raise ValueError(
                    f"{where}: unknown options {unknown}; {self.cls.__name__} takes "
                    f"{', '.join(sorted(valid))}"
                )
        clash = sorted(k for k in options if k in self.fields and options[k] != self.fields[k])
        if clash:
            raise ValueError(
                f"{where}: options {clash} would change what defines the variant "
                f"({self.fields}); pick another variant or build {self.cls.__name__} directly"
            )
        return self.cls(hidden_size, **{**self.fields, **options})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"configure({self.cls.__name__}{', ' if args else ''}{args})"


def configure(cls: type, **fields: Any) -> Configuration:
    """A variant factory: ``cls`` with ``fields`` fixed (``configure(LSTMFamily, coupled=True)``).

    Args:
      cls: a cell class whose first argument is ``hidden_size``.
      **fields: the fields that define the variant.

    Returns:
      A factory ``(hidden_size, **options) -> cell`` for :func:`register`.
    """
    return Configuration(cls, **fields)


_BUILT_IN = (
    ("vanilla", "lstm", configure(LSTMFamily),
     "LSTM with peepholes and output activation (Greff's vanilla)",
     f"{_GREFF}; Gers & Schmidhuber 2000 (peepholes)"),
    ("nig", "lstm", configure(LSTMFamily, input_gate=False),
     "no input gate (i = 1)", _GREFF),
    ("nfg", "lstm", configure(LSTMFamily, forget_gate=False),
     "no forget gate (f = 1)", _GREFF),
    ("nog", "lstm", configure(LSTMFamily, output_gate=False),
     "no output gate (o = 1)", _GREFF),
    ("niaf", "lstm", configure(LSTMFamily, input_activation=False),
     "no input activation function (block input g(x) = x)", _GREFF),
    ("noaf", "lstm", configure(LSTMFamily, output_activation=False),
     "no output activation function (h(x) = x)", _GREFF),
    ("cifg", "lstm", configure(LSTMFamily, coupled=True),
     "coupled input and forget gate (f = 1 - i)", _GREFF),
    ("np", "lstm", configure(LSTMFamily, peepholes=False),
     "no peepholes (the PyTorch/cuDNN LSTM, jaxrnn.LSTM)", _GREFF),
    ("fgr", "lstm", configure(LSTMFamily, full_gate_recurrence=True),
     "full gate recurrence (gates at t-1 feed all gates)", _GREFF),
    ("fb1", "lstm", configure(LSTMFamily, peepholes=False, forget_bias=1.0),
     "no-peephole LSTM with forget bias 1",
     'Jozefowicz et al. 2015, "An Empirical Exploration of Recurrent Network '
     'Architectures"'),
    ("lnlstm", "lstm", configure(LSTMFamily, peepholes=False, layer_norm=True),
     "layer-normalised LSTM", 'Ba et al. 2016, "Layer Normalization"'),
    ("gru", "gru", configure(GRU, reset_after=True),
     "GRU, reset gate after the recurrent matmul (cuDNN/PyTorch)",
     'Cho et al. 2014; Chung et al. 2014'),
    ("gru_cho", "gru", configure(GRU, reset_after=False),
     "GRU, reset gate before the recurrent matmul (original)",
     'Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder"'),
    ("mgu", "gru", configure(MGU),
     "minimal gated unit (one forget gate)",
     'Zhou et al. 2016, "Minimal Gated Unit for Recurrent Neural Networks"'),
    ("mingru", "linear", configure(MinGRU),
     "minGRU: input-only gates, linear recurrence (log-space parallel scan)",
     'Feng et al. 2024, "Were RNNs All We Needed?"'),
    ("minlstm", "linear", configure(MinLSTM),
     "minLSTM: normalised input-only gates, linear recurrence (log-space)",
     'Feng et al. 2024, "Were RNNs All We Needed?"'),
    ("lru", "linear", configure(LRU),
     "linear recurrent unit: complex diagonal recurrence",
     'Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences"'),
    ("rglru", "linear", configure(RGLRU),
     "real-gated linear recurrent unit of Griffin",
     'De et al. 2024, "Griffin: Mixing Gated Linear Recurrences with Local Attention"'),
    ("mingru_neg", "linear", configure(MinGRU, log_space=False, negative_eigenvalues=True),
     "minGRU with transition 1 - 2z in (-1, 1) (linear space, identity candidate)",
     f'{_GRAZZI}; Feng et al. 2024'),
    ("rglru_neg", "linear", configure(RGLRU, negative_eigenvalues=True),
     "RG-LRU with transition 2a - 1 in (-1, 1)", f"{_GRAZZI}; De et al. 2024"),
    ("mamba", "linear", configure(Mamba),
     "Mamba's S6 selective scan: input-dependent Delta, B, C; diagonal state per channel",
     _MAMBA),
    ("mamba_neg", "linear", configure(Mamba, negative_eigenvalues=True),
     "S6 selective scan with transition 2 exp(Delta A) - 1 in (-1, 1)",
     f"{_GRAZZI}; Gu & Dao 2023"),
    ("slstm", "modern", configure(SLSTM),
     "sLSTM: exponential input gate, normaliser and stabiliser, block-diagonal recurrence",
     _XLSTM),
    ("mlstm", "modern", configure(MLSTM),
     "mLSTM: matrix memory with exponential gating (recurrent and chunkwise forms)", _XLSTM),
    ("deltanet", "modern", configure(DeltaNet),
     "DeltaNet: delta-rule fast-weight memory, beta in (0, 1)", _DELTA),
    ("deltanet_neg", "modern", configure(DeltaNet, negative_eigenvalues=True),
     "DeltaNet with beta in (0, 2): transition eigenvalues in (-1, 1]",
     f"{_GRAZZI}; Yang et al. 2024"),
    ("gated_deltanet", "modern", configure(GatedDeltaNet),
     "Gated DeltaNet: delta rule with a data-dependent decay alpha", _GATED_DELTA),
    ("gated_deltanet_neg", "modern", configure(GatedDeltaNet, negative_eigenvalues=True),
     "Gated DeltaNet with beta in (0, 2)", f"{_GRAZZI}; Yang et al. 2025"),
)
_REGISTRY: dict[str, Variant] = {}




def _key(name: str) -> str:
    return name.strip().lower()


def register(
    name: str,
    factory: Callable[..., Any],
    *,
    description: str = "",
    citation: str = "",
    family: str = "user",
) -> Callable[..., Any]:
    """Adds a variant to the registry, beside the built-in ones.

    Args:
      name: the variant's name (matched case-insensitively; no ``:``, which marks specs).
      factory: ``factory(hidden_size, **options) -> cell``: a cell class whose first argument is
        ``hidden_size``, a :func:`configure` result, or any function.
      description: one line saying what the variant is.
      citation: the paper it comes from.
      family: a group name for :func:`names` (built-in: lstm, gru, linear, modern).

    Returns:
      ``factory``, unchanged.

    Raises:
      ValueError: when ``name`` is taken or not a valid name; TypeError when ``factory`` is not
        callable.
    """
    if not isinstance(name, str) or not name.strip() or ":" in name:
        raise ValueError(
            f"variants.register: name={name!r}; expected a non-empty string without ':'"
        )
    if not callable(factory):
        raise TypeError(f"variants.register({name!r}): factory must be callable; got {factory!r}")
    key = _key(name)
    if key in _REGISTRY:
        raise ValueError(
            f"variants.register: name={name!r} is taken ({describe(key)}); pick another name "
            "or variants.unregister it first"
        )
    _REGISTRY[key] = Variant(key, factory, family, description, citation)
    return factory


def unregister(name: str) -> None:
    """Removes a variant from the registry (a ValueError if it is not registered)."""
    get(name)
    del _REGISTRY[_key(name)]


@contextlib.contextmanager
def registered(name: str, factory: Callable[..., Any], **kwargs: Any) -> Iterator[None]:
    """:func:`register` for the duration of a ``with`` block (tests, notebooks)."""
    register(name, factory, **kwargs)
    try:
        yield
    finally:
        _REGISTRY.pop(_key(name), None)


for _name, _family, _factory, _description, _citation in _BUILT_IN:
    register(_name, _factory, description=_description, citation=_citation, family=_family)


def is_spec(name: str) -> bool:
    """True for a ``"module:attr"`` spec (a cell class or factory to import)."""
    return isinstance(name, str) and ":" in name


def load_spec(spec: str) -> Callable[..., Any]:
    """Imports the cell class or factory named by ``"module:attr"`` (``attr`` may be dotted).

    The module is imported from ``sys.path`` (e.g. ``PYTHONPATH``); errors name the spec.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(
            f"variant spec {spec!r}: expected 'module:attr', e.g. 'mypkg.cells:MyCell'"
        )
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"variant spec {spec!r}: cannot import module {module_name!r} ({err}); is it on "
            "PYTHONPATH?"
        ) from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"variant spec {spec!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"variant spec {spec!r}: {attr} is not a cell class or factory")
    return obj


def names(family: str | None = None) -> tuple[str, ...]:
    """Every registered name, in registration order, vanilla first (or those of one family)."""
    families = sorted({v.family for v in _REGISTRY.values()})
    if family is not None and family not in families:
        raise ValueError(f"variants.names: family={family!r}; expected one of {families}")
    return tuple(v.name for v in _REGISTRY.values() if family is None or v.family == family)


def get(name: str) -> Variant:
    """The registry entry of ``name`` (case-insensitive); a ValueError listing the valid names."""
    key = _key(name) if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(
            f"unknown variant name={name!r}; valid names: {', '.join(names())}, or a "
            "'module:attr' spec"
        )
    return _REGISTRY[key]


def describe(name: str) -> str:
    """One line: the variant's description and its citation (or the spec's class/factory)."""
    if is_spec(name):
        obj = load_spec(name)
        doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
        return f"{name}: {doc[0] if doc else getattr(obj, '__name__', repr(obj))} [user cell]"
    v = get(name)
    return f"{v.name}: {v.description} [{v.citation}]"


def make(name: str, hidden_size: int, **options: Any) -> Any:
    """Builds the cell of variant ``name``.

    Args:
      name: one of :func:`names` (case-insensitive), or a ``"module:attr"`` spec naming a cell
        class or factory ``(hidden_size, **options) -> cell`` importable from ``sys.path``.
      hidden_size: the cell's hidden size.
      **options: further arguments of the factory (``forget_bias=1.0``,
        ``initializer="orthogonal"``, ...); for a built-in configuration, a field that defines
        the variant cannot be changed.

    Returns:
      The cell (an object with the cell protocol, :class:`jaxrnn.Cell`).
    """
    factory = load_spec(name) if is_spec(name) else get(name).factory
    try:
        cell = factory(hidden_size, **options)
    except ValueError as err:
        raise ValueError(f"variants.make({name!r}): {err}") from err
    check_cell(f"variants.make({name!r})", cell)
    return cell


def parameter_count(cell, input_size: int) -> int:
    """Number of scalar parameters of ``cell`` for ``input_size`` (no arrays are allocated)."""
    shapes = jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.PRNGKey(0))
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(shapes)))
