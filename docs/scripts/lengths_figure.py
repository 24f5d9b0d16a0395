"""Draws docs/assets/lengths.png: what jaxrnn.scan does with lengths, reverse and resets.

The numbers in the figure are computed by jaxrnn.scan itself, with a cell whose carry counts
the steps it has taken since the last (re)start and outputs the count: an output is its step's
position in processing order, a zero is a padding step, and the final carry is the count of the
step it was taken after.

    python docs/scripts/lengths_figure.py
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import NamedTuple

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxrnn  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[1] / "assets" / "lengths.png"
T = 8
LENGTHS = np.array([8, 5, 2, 0])


class Count(NamedTuple):
    h: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class Counter:
    """carry h -> h + 1; output h + 1."""

    hidden_size: int = 1

    def init(self, key, input_size):
        return {"w_ih": jnp.zeros((1, input_size))}

    def initial_carry(self, params, batch_shape=()):
        return Count(jnp.zeros((*batch_shape, 1)))

    def step(self, params, carry, x):
        h = carry.h + 1.0
        return Count(h), h


def run(**kwargs):
    cell = Counter()
    params = cell.init(None, 1)
    xs = jnp.zeros((len(LENGTHS), T, 1))
    ys, final = jaxrnn.scan(cell, params, xs, strategy="in_loop", **kwargs)
    return np.asarray(ys[..., 0]).astype(int), np.asarray(final.h[:, 0]).astype(int)


def panel(ax, ys, final, title, resets=None):
    batch = ys.shape[0]
    ax.set_xlim(-0.5, T - 0.5)
    ax.set_ylim(batch - 0.5, -0.5)
    for b in range(batch):
        for t in range(T):
            value = ys[b, t]
            colour = "#c7d7f0" if value else "#e6e6e6"
            ax.add_patch(plt.Rectangle((t - 0.45, b - 0.4), 0.9, 0.8, color=colour))
            ax.text(t, b, str(value), ha="center", va="center", fontsize=10,
                    color="black" if value else "#999999")
        # the final carry is the one after the step whose output equals the final count
        returned = [t for t in range(T) if final[b] and ys[b, t] == final[b]]
        if returned:
            t = max(returned)
            ax.add_patch(plt.Rectangle((t - 0.45, b - 0.4), 0.9, 0.8, fill=False,
                                       edgecolor="#c0392b", linewidth=2.5))
        else:
            ax.text(T - 0.4, b, "final = initial carry", ha="left", va="center", fontsize=8,
                    color="#c0392b")
        if resets is not None:
            for t in np.flatnonzero(resets[b]):
                ax.plot([t - 0.5, t - 0.5], [b - 0.45, b + 0.45], color="#27ae60", linewidth=3)
    ax.set_yticks(range(batch), [f"b={b}, L={length}" for b, length in enumerate(LENGTHS)])
    ax.set_xticks(range(T), [f"t={t}" for t in range(T)])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, loc="left", fontsize=11)


def main() -> None:
    lengths = jnp.asarray(LENGTHS)
    resets = np.zeros((len(LENGTHS), T), bool)
    resets[0, 3] = resets[0, 6] = resets[1, 2] = True
    fig, axes = plt.subplots(3, 1, figsize=(9.5, 8.4))
    panel(axes[0], *run(lengths=lengths), "scan(..., lengths=L): outputs past L are zero")
    panel(axes[1], *run(lengths=lengths, reverse=True),
          "reverse=True: the valid part runs from t=L-1 down to t=0; padding stays at the end")
    panel(axes[2], *run(lengths=lengths, resets=jnp.asarray(resets)),
          "resets (green bars): the carry returns to the initial carry before that step",
          resets=resets)
    fig.text(0.01, 0.005, "Numbers: the step's position in processing order since the last "
             "start (0: padding, output exactly zero).\nRed box: the step after which the "
             "final carry is returned.", fontsize=8.5)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=100)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
