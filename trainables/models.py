"""Models: linear softmax, linear multiclass SVM, fully connected ReLU net.

One class, :class:`Net`, covers all three: ``hidden=()`` gives a linear classifier with
parameters ``W``, ``b``; hidden layers give ``W1, b1, ..., W{L+1}, b{L+1}`` with ReLU after
every hidden layer and inverted dropout (drop probability ``dropout``) after each ReLU.
Losses are averaged over the batch; L2 regularization is ``0.5 * reg * sum(W**2)`` over the
weight matrices (not the biases), so its gradient is ``reg * W``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

LOSSES = ("softmax", "svm")
INITS = ("he", "xavier")

Params = dict[str, np.ndarray]


def softmax_loss(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(scores) and its gradient w.r.t. scores."""
    rows = np.arange(len(y))
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[rows, y].mean()  # a numpy scalar: keeps extended precision
    dscores = np.exp(log_probs)
    dscores[rows, y] -= 1.0
    return loss, dscores / len(y)


def svm_margins(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weston–Watkins margins ``s_j - s_y + 1``, with 0 at the correct class."""
    rows = np.arange(len(y))
    margins: np.ndarray = scores - scores[rows, y][:, None] + 1.0
    margins[rows, y] = 0.0
    return margins


def svm_loss(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean multiclass hinge loss ``sum_{j != y} max(0, s_j - s_y + 1)`` and its gradient."""
    margins = svm_margins(scores, y)
    positive = margins > 0
    loss = np.maximum(margins, 0.0).sum() / len(y)
    dscores = positive.astype(scores.dtype)
    dscores[np.arange(len(y)), y] = -positive.sum(axis=1)
    return loss, dscores / len(y)


def l2_penalty(params: Params, names: Sequence[str], reg: float) -> tuple[float, Params]:
    """``0.5 * reg * sum(W**2)`` over ``names`` and its gradient ``reg * W``."""
    loss = 0.5 * reg * sum(np.sum(params[n] ** 2) for n in names)
    return loss, {n: reg * params[n] for n in names}


def init_std(init: str | float, fan_in: int) -> float:
    """``he``: sqrt(2/fan_in); ``xavier``: sqrt(1/fan_in); a number: that std."""
    if init == "he":
        return float(np.sqrt(2.0 / fan_in))
    if init == "xavier":
        return float(np.sqrt(1.0 / fan_in))
    if isinstance(init, (int, float)) and not isinstance(init, bool) and init >= 0:
        return float(init)
    raise ValueError(f"init: expected 'he', 'xavier' or a std >= 0, got {init!r}")


@dataclass
class Forward:
    scores: np.ndarray
    inputs: list[np.ndarray]  # input of each affine layer (X, h1, h2, ...)
    pre: list[np.ndarray]  # pre-activation of each hidden layer (z1, z2, ...)
    masks: list[np.ndarray | None]  # scaled dropout masks per hidden layer


@dataclass
class Net:
    """A linear classifier (``hidden=()``) or a fully connected ReLU network."""

    params: Params
    hidden: tuple[int, ...] = ()
    loss_kind: str = "softmax"
    dropout: float = 0.0
    layers: list[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        if self.loss_kind not in LOSSES:
            raise ValueError(f"loss: expected one of {', '.join(LOSSES)}, got {self.loss_kind!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: drop probability must be in [0, 1), got {self.dropout}")
        n = len(self.hidden) + 1
        self.layers = [("W", "b")] if n == 1 else [(f"W{i}", f"b{i}") for i in range(1, n + 1)]

    @classmethod
    def create(
        cls,
        n_features: int,
        n_classes: int,
        *,
        hidden: Sequence[int] = (),
        loss_kind: str = "softmax",
        init: str | float = "he",
        dropout: float = 0.0,
        rng: np.random.Generator,
    ) -> Net:
        sizes = [n_features, *hidden, n_classes]
        if any(s < 1 for s in sizes):
            raise ValueError(f"hidden: layer sizes must be >= 1, got {list(hidden)}")
        names = ["W"] if not hidden else [f"W{i}" for i in range(1, len(sizes))]
        params: Params = {}
        for name, fan_in, fan_out in zip(names, sizes[:-1], sizes[1:], strict=True):
            params[name] = rng.standard_normal((fan_in, fan_out)) * init_std(init, fan_in)
            params["b" + name[1:]] = np.zeros(fan_out)
        return cls(params, tuple(hidden), loss_kind, dropout)

    @property
    def weight_names(self) -> list[str]:
        return [w for w, _ in self.layers]

    def forward(self, X: np.ndarray, rng: np.random.Generator | None = None) -> Forward:
        """Scores for ``X``; dropout is applied only when ``rng`` is given."""
        out = Forward(X, [], [], [])
        h = X
        for depth, (w, b) in enumerate(self.layers):
            out.inputs.append(h)
            z = h @ self.params[w] + self.params[b]
            if depth == len(self.layers) - 1:
                out.scores = z
                break
            h = np.maximum(z, 0.0)
            mask = None
            if rng is not None and self.dropout > 0:
                mask = (rng.random(h.shape) >= self.dropout) / (1.0 - self.dropout)
                h = h * mask
            out.pre.append(z)
            out.masks.append(mask)
        return out

    def data_loss(self, scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean data loss (a numpy scalar of the scores' dtype) and its score gradient."""
        return softmax_loss(scores, y) if self.loss_kind == "softmax" else svm_loss(scores, y)

    def loss(
        self, X: np.ndarray, y: np.ndarray, reg: float, rng: np.random.Generator | None = None
    ) -> tuple[float, Params, Forward]:
        """Data loss + L2 penalty, the gradient of every parameter, and the forward pass."""
        fwd = self.forward(X, rng)
        loss, dz = self.data_loss(fwd.scores, y)
        grads: Params = {}
        for depth in range(len(self.layers) - 1, -1, -1):
            w, b = self.layers[depth]
            grads[w] = fwd.inputs[depth].T @ dz
            grads[b] = dz.sum(axis=0)
            if depth == 0:
                break
            dh = dz @ self.params[w].T
            mask = fwd.masks[depth - 1]
            if mask is not None:
                dh *= mask
            dz = dh * (fwd.pre[depth - 1] > 0)
        if reg:
            reg_loss, reg_grads = l2_penalty(self.params, self.weight_names, reg)
            loss += reg_loss
            for name, g in reg_grads.items():
                grads[name] += g
        return loss, grads, fwd

    def kink_signature(
        self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Which side of every non-differentiable point the loss is on (ReLU inputs, hinges).

        Two signatures differing in k places mean k kinks lie between the two points.
        """
        fwd = self.forward(X, rng)
        parts = [(z > 0).ravel() for z in fwd.pre]
        if self.loss_kind == "svm":
            margins = svm_margins(fwd.scores, y)
            margins[np.arange(len(y)), y] = -1.0
            parts.append((margins > 0).ravel())
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
