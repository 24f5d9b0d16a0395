"""PyTorch interop: ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` to jaxrnn and back.

:func:`from_torch` turns a PyTorch recurrent module into ``(model, params)``, where ``model`` is a
:class:`TorchLikeRNN` (a :class:`jaxrnn.StackedRNN` of :class:`jaxrnn.Elman`,
:class:`jaxrnn.LSTM` or :class:`jaxrnn.GRU` cells, plus PyTorch's ``batch_first`` convention)
and ``params`` holds the module's weights. :meth:`TorchLikeRNN.apply` computes what the module's
``forward`` computes, in PyTorch's layouts::

    output, h_n         = model.apply(params, x, h_0)            # RNN, GRU
    output, (h_n, c_n)  = model.apply(params, x, (h_0, c_0))     # LSTM

    x        [B, T, D] if batch_first else [T, B, D]; or unbatched [T, D]
    output   [B, T, num_dirs * R] if batch_first else [T, B, num_dirs * R]
    h_0, h_n [num_layers * num_dirs, B, R]       R = proj_size or hidden_size
    c_0, c_n [num_layers * num_dirs, B, H]

Row ``layer * num_dirs + direction`` of ``h_n`` is that layer's forward (0) or backward (1)
direction, as in PyTorch. With ``lengths``, the result equals ``pack_padded_sequence`` ->
module -> ``pad_packed_sequence(total_length=T)``: outputs past each length are zero and the
final state is the one at the last valid step (a length of 0, which PyTorch rejects, returns the
initial state and zero outputs).

Parameter mapping (jaxrnn's cell layouts are PyTorch's; ``_reverse`` is the "bwd" direction)::

    weight_ih_l{k}[_reverse] -> params["layers"][k]["fwd" | "bwd"]["w_ih"]
    weight_hh_l{k}[_reverse] -> ...["w_hh"]     bias_ih_l{k} -> ...["b_ih"]
    bias_hh_l{k}[_reverse]   -> ...["b_hh"]     weight_hr_l{k} -> ...["w_hr"]  (LSTM, proj_size)

:func:`to_torch` goes back: it builds the PyTorch module and copies the weights into it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxrnn import _checks
from jaxrnn.cells import GRU, LSTM, Elman, ElmanState, GRUState, LSTMState
from jaxrnn.drivers.inputs import check_lengths
from jaxrnn.nn.stack import StackedRNN

_TORCH_NAMES = {
    "w_ih": "weight_ih_l{}",
    "w_hh": "weight_hh_l{}",
    "b_ih": "bias_ih_l{}",
    "b_hh": "bias_hh_l{}",
    "w_hr": "weight_hr_l{}",
}
_SUFFIX = {"fwd": "", "bwd": "_reverse"}
_CLASSES = {"RNN_TANH": "RNN", "RNN_RELU": "RNN", "LSTM": "LSTM", "GRU": "GRU"}


@dataclasses.dataclass(frozen=True)
class TorchLikeRNN:
    """A :class:`jaxrnn.StackedRNN` with the calling convention of ``torch.nn.RNN/LSTM/GRU``.

    Frozen and hashable, so it can be a static argument to ``jax.jit``.

    Attributes:
      rnn: the stack (its cell is ``Elman``, ``LSTM`` or ``GRU``; its ``dropout`` is the
        module's, applied between layers when ``apply(..., train=True, key=...)``).
      batch_first: input and output layout, ``[B, T, F]`` if True else ``[T, B, F]``.
    """

    rnn: StackedRNN
    batch_first: bool = False

    def __post_init__(self):
        if not isinstance(self.rnn, StackedRNN):
            raise TypeError(
                f"TorchLikeRNN: rnn is {type(self.rnn).__name__}; expected a jaxrnn.StackedRNN"
            )
        _checks.check_bool("TorchLikeRNN", "batch_first", self.batch_first)
        mode = self.mode  # raises for a cell PyTorch has no module for
        rnn = self.rnn
        cell = rnn.cell
        unsupported = []
        if rnn.residual:
            unsupported.append("residual=True")
        if rnn.locked_dropout:
            unsupported.append("locked_dropout=True")
        if rnn.recurrent_dropout:
            unsupported.append(f"recurrent_dropout={rnn.recurrent_dropout}")
        if rnn.learn_initial_state:
            unsupported.append("learn_initial_state=True")
        if mode == "LSTM" and cell.forget_bias != 0.0:
            unsupported.append(f"LSTM forget_bias={cell.forget_bias}")
        if mode == "GRU" and not cell.reset_after:
            unsupported.append("GRU reset_after=False")
        if cell.compute_dtype is not None:
            unsupported.append(f"compute_dtype={cell.compute_dtype}")
        if unsupported:
            raise ValueError(
                "TorchLikeRNN: rnn has " + ", ".join(unsupported)
                + "; PyTorch's RNN/LSTM/GRU modules have no such option"
            )

    @property
    def mode(self) -> str:
        """PyTorch's ``RNNBase.mode``: "RNN_TANH", "RNN_RELU", "LSTM" or "GRU"."""
        cell = self.rnn.cell
        if isinstance(cell, Elman):
            return "RNN_TANH" if cell.nonlinearity == "tanh" else "RNN_RELU"
        if isinstance(cell, LSTM):
            return "LSTM"
        if isinstance(cell, GRU):
            return "GRU"
        raise TypeError(
            f"TorchLikeRNN: rnn.cell is {type(cell).__name__}; expected jaxrnn.Elman, "
            "jaxrnn.LSTM or jaxrnn.GRU"
        )

    @property
    def num_directions(self) -> int:
        return len(self.rnn.directions)

    @property
    def hidden_size(self) -> int:
        return self.rnn.cell.hidden_size

    @property
    def proj_size(self) -> int:
        return getattr(self.rnn.cell, "proj_size", 0)

    @property
    def state_size(self) -> int:
        """R, the size of h_0 / h_n rows (proj_size or hidden_size)."""
        return self.rnn.cell.output_size

    def init(self, key: jax.Array, input_size: int) -> dict[str, Any]:
        """Fresh params (the cell's initialiser; PyTorch's by default)."""
        return self.rnn.init(key, input_size)

    def apply(
        self,
        params: dict[str, Any],
        x: jax.Array,
        initial_state: Any = None,
        lengths: Any = None,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[jax.Array, Any]:
        """Runs the stack as the PyTorch module's ``forward`` would.

        Args:
          params: ``{"layers": [{"fwd": p, "bwd": p}, ...]}`` (from :func:`from_torch`).
          x: float input, ``[B, T, D]`` if ``batch_first`` else ``[T, B, D]``; or ``[T, D]``
            for one unbatched sequence.
          initial_state: ``h_0`` [num_layers * num_dirs, B, R] (RNN, GRU) or ``(h_0, c_0)``
            (LSTM; c_0 [num_layers * num_dirs, B, H]); zeros when None. Unbatched: no B axis.
          lengths: int [B], valid steps of each sequence (scalar for unbatched input); as
            ``pack_padded_sequence`` + ``pad_packed_sequence(total_length=T)``.
          key: PRNG key for the between-layer dropout; needed when ``train`` and dropout > 0.
          train: apply the between-layer dropout (PyTorch's ``module.train()``).

        Returns:
          ``(output, h_n)`` or, for an LSTM, ``(output, (h_n, c_n))``, in PyTorch's layouts.
        """
        where = "TorchLikeRNN.apply"
        for name, value in (("x", x), ("initial_state", initial_state), ("lengths", lengths)):
            if any(isinstance(leaf, torch.Tensor) for leaf in jax.tree.leaves(value)):
                raise TypeError(
                    f"{where}: {name} holds a torch.Tensor; expected JAX or NumPy arrays. "
                    f"Convert with jnp.asarray(t.detach().cpu().numpy()) (gradients do not flow "
                    "back into torch; to run the PyTorch module itself, use to_torch)"
                )
        _checks.check_float(where, "x", x)
        input_size = int(params["layers"][0]["fwd"]["w_ih"].shape[-1])
        rank = np.ndim(x)
        if rank not in (2, 3):
            raise ValueError(
                f"{where}: x has shape {tuple(np.shape(x))}; expected {self._x_layout()} or "
                "[T, input_size] (unbatched)"
            )
        expected = (None,) * (rank - 1) + (input_size,)
        layout = self._x_layout() if rank == 3 else "[T, input_size]"
        _checks.check_shape(where, "x", x, expected, f"= {layout} with input_size={input_size}")
        x = jnp.asarray(x)
        unbatched = rank == 2
        if unbatched:
            x = x[None] if self.batch_first else x[:, None]
        batch, steps = (x.shape[0], x.shape[1]) if self.batch_first else (x.shape[1], x.shape[0])

        if lengths is not None:
            if not isinstance(lengths, jax.Array):
                lengths = np.asarray(lengths)
                if np.issubdtype(lengths.dtype, np.integer):
                    lengths = lengths.astype(np.int32)
            if unbatched:
                if np.ndim(lengths) != 0:
                    raise ValueError(
                        f"{where}: lengths has shape {tuple(np.shape(lengths))}; expected () "
                        "for unbatched x"
                    )
                lengths = jnp.reshape(lengths, (1,))
            check_lengths(where, lengths, batch, steps)
            lengths = jnp.asarray(lengths)

        state = None
        if initial_state is not None:
            state = self._state_from_torch(where, initial_state, batch, unbatched)
        out, finals = self.rnn.apply(
            params, x, state, lengths=lengths, key=key, train=train,
            time_major=not self.batch_first,
        )
        h_n = jnp.stack([carry.h for layer in finals for carry in layer])
        final: Any = h_n
        if self.mode == "LSTM":
            final = (h_n, jnp.stack([carry.c for layer in finals for carry in layer]))
        if unbatched:
            out = out[0] if self.batch_first else out[:, 0]
            final = jax.tree.map(lambda s: s[:, 0], final)
        return out, final

    def _x_layout(self) -> str:
        return "[B, T, input_size]" if self.batch_first else "[T, B, input_size]"

    def _state_from_torch(self, where, initial_state, batch, unbatched):
        """PyTorch's h_0 (or (h_0, c_0)) -> StackedRNN's tuple over layers of directions."""
        rows = self.rnn.num_layers * self.num_directions
        lead = (rows,) if unbatched else (rows, batch)
        hint = (
            "= [num_layers * num_dirs, size] for unbatched x" if unbatched
            else "= [num_layers * num_dirs, B, size]"
        )
        if self.mode == "LSTM":
            if not isinstance(initial_state, tuple | list) or len(initial_state) != 2:
                raise ValueError(
                    f"{where}: initial_state is {type(initial_state).__name__}; expected "
                    "(h_0, c_0) for an LSTM"
                )
            parts = [
                ("initial_state[0] (h_0)", initial_state[0], self.state_size),
                ("initial_state[1] (c_0)", initial_state[1], self.hidden_size),
            ]
        else:
            parts = [("initial_state (h_0)", initial_state, self.state_size)]
        arrays = []
        for label, value, size in parts:
            _checks.check_float(where, label, value)
            _checks.check_shape(where, label, value, (*lead, size), hint)
            value = jnp.asarray(value)
            arrays.append(value[:, None] if unbatched else value)

        def carry(row):
            if self.mode == "LSTM":
                return LSTMState(h=arrays[0][row], c=arrays[1][row])
            if self.mode == "GRU":
                return GRUState(h=arrays[0][row])
            return ElmanState(h=arrays[0][row])

        return tuple(
            tuple(carry(layer * self.num_directions + d) for d in range(self.num_directions))
            for layer in range(self.rnn.num_layers)
        )


def _to_jax(tensor: torch.Tensor) -> jax.Array:
    t = tensor.detach().cpu()
    dtype = jnp.dtype(str(t.dtype).removeprefix("torch."))
    if t.dtype in (torch.float32, torch.float64, torch.float16):
        return jnp.asarray(t.numpy(), dtype)
    return jnp.asarray(t.float().numpy()).astype(dtype)  # bfloat16 has no numpy view in torch


def _to_torch(array: jax.Array) -> torch.Tensor:
    dtype = getattr(torch, jnp.dtype(array.dtype).name)
    return torch.from_numpy(np.array(array, dtype=np.float32)).to(dtype)


def from_torch(module: torch.nn.Module) -> tuple[TorchLikeRNN, dict[str, Any]]:
    """Converts a ``torch.nn.RNN``, ``torch.nn.LSTM`` or ``torch.nn.GRU`` to jaxrnn.

    Every option of the module carries over: ``num_layers``, ``bidirectional``, ``bias``,
    ``batch_first``, ``nonlinearity``, ``proj_size`` and ``dropout`` (a setting of the returned
    model, active only in ``apply(..., train=True, key=...)``).

    Args:
      module: the PyTorch module (any device; weights are copied to host).

    Returns:
      ``(model, params)``: a :class:`TorchLikeRNN` and its params, so that
      ``model.apply(params, x, h_0, lengths)`` equals ``module(x, h_0)`` (see the module
      docstring for layouts and lengths).
    """
    mode = getattr(module, "mode", None)
    if not isinstance(module, torch.nn.RNNBase) or mode not in _CLASSES:
        raise TypeError(
            f"from_torch: module is {type(module).__name__}; expected torch.nn.RNN, "
            "torch.nn.LSTM or torch.nn.GRU"
        )
    hidden, bias = module.hidden_size, module.bias
    dtype = jnp.dtype(str(module.weight_ih_l0.dtype).removeprefix("torch."))
    if mode == "LSTM":
        cell: Any = LSTM(hidden, proj_size=module.proj_size, use_bias=bias, param_dtype=dtype)
    elif mode == "GRU":
        cell = GRU(hidden, use_bias=bias, param_dtype=dtype)
    else:
        cell = Elman(hidden, nonlinearity=module.nonlinearity, use_bias=bias, param_dtype=dtype)
    rnn = StackedRNN(
        cell, num_layers=module.num_layers, bidirectional=module.bidirectional,
        dropout=float(module.dropout),
    )
    model = TorchLikeRNN(rnn, batch_first=module.batch_first)
    layers = []
    for layer in range(module.num_layers):
        layer_params = {}
        for direction in rnn.directions:
            names = cell.param_layout(1)
            layer_params[direction] = {
                name: _to_jax(
                    getattr(module, _TORCH_NAMES[name].format(layer) + _SUFFIX[direction])
                )
                for name in names
            }
        layers.append(layer_params)
    return model, {"layers": layers}


def to_torch(model: TorchLikeRNN | StackedRNN, params: dict[str, Any]) -> torch.nn.RNNBase:
    """Builds the PyTorch module for ``model`` and copies ``params`` into it.

    Args:
      model: a :class:`TorchLikeRNN` (from :func:`from_torch`), or a bare
        :class:`jaxrnn.StackedRNN` of ``Elman``/``LSTM``/``GRU`` cells (taken as
        ``batch_first=True``, jaxrnn's own layout).
      params: the model's params.

    Returns:
      A ``torch.nn.RNN``, ``torch.nn.LSTM`` or ``torch.nn.GRU`` (on the CPU, in the params'
      dtype) computing the same function.
    """
    if isinstance(model, StackedRNN):
        model = TorchLikeRNN(model, batch_first=True)
    if not isinstance(model, TorchLikeRNN):
        raise TypeError(
            f"to_torch: model is {type(model).__name__}; expected TorchLikeRNN or StackedRNN"
        )
    rnn, mode = model.rnn, model.mode
    if len(params["layers"]) != rnn.num_layers:
        raise ValueError(
            f"to_torch: params has {len(params['layers'])} layers; expected {rnn.num_layers}"
        )
    first = params["layers"][0]["fwd"]["w_ih"]
    kwargs: dict[str, Any] = dict(
        input_size=int(first.shape[-1]), hidden_size=model.hidden_size,
        num_layers=rnn.num_layers, bias=rnn.cell.use_bias, batch_first=model.batch_first,
        dropout=rnn.dropout, bidirectional=rnn.bidirectional,
        dtype=getattr(torch, jnp.dtype(first.dtype).name),
    )
    if mode == "LSTM":
        module: torch.nn.RNNBase = torch.nn.LSTM(proj_size=model.proj_size, **kwargs)
    elif mode == "GRU":
        module = torch.nn.GRU(**kwargs)
    else:
        module = torch.nn.RNN(nonlinearity=rnn.cell.nonlinearity, **kwargs)
    with torch.no_grad():
        for layer, layer_params in enumerate(params["layers"]):
            for direction in rnn.directions:
                for name, value in layer_params[direction].items():
                    target = getattr(module, _TORCH_NAMES[name].format(layer) + _SUFFIX[direction])
                    if tuple(target.shape) != tuple(value.shape):
                        raise ValueError(
                            f"to_torch: params['layers'][{layer}][{direction!r}][{name!r}] has "
                            f"shape {tuple(value.shape)}; expected {tuple(target.shape)}"
                        )
                    target.copy_(_to_torch(value))
    return module
