"""Per-parameter update rules from the training recipe.

Each rule turns a gradient into an *update* (the array that is added to the parameter), so
the training loop can measure ``|update| / |param|`` before applying it. State (velocity,
caches, moments, step count) is kept per parameter name.

=========  ================================================================================
sgd        ``update = -lr * dx``
momentum   ``v = mu * v - lr * dx``; ``update = v``
nesterov   rewritten form that stores the look-ahead parameters:
           ``v_prev = v``; ``v = mu * v - lr * dx``; ``update = -mu * v_prev + (1 + mu) * v``
adagrad    ``cache += dx**2``; ``update = -lr * dx / (sqrt(cache) + eps)``
rmsprop    ``cache = decay_rate * cache + (1 - decay_rate) * dx**2``;
           ``update = -lr * dx / (sqrt(cache) + eps)``
adam       ``m = beta1 * m + (1 - beta1) * dx``; ``v = beta2 * v + (1 - beta2) * dx**2``;
           bias-corrected ``m_hat = m / (1 - beta1**t)``, ``v_hat = v / (1 - beta2**t)``;
           ``update = -lr * m_hat / (sqrt(v_hat) + eps)``
=========  ================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UPDATE_RULES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


@dataclass
class Optimizer:
    """Stateful update rule; ``update(name, dx, lr)`` returns the step to add to ``name``."""

    rule: str = "sgd"
    mu: float = 0.9
    decay_rate: float = 0.99
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    slots: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    steps: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.rule not in UPDATE_RULES:
            raise ValueError(
                f"update: unknown rule {self.rule!r}; expected one of {', '.join(UPDATE_RULES)}"
            )

    def update(self, name: str, dx: np.ndarray, lr: float) -> np.ndarray:
        state = self.slots.setdefault(name, {})
        step = getattr(self, f"_{self.rule}")
        result: np.ndarray = step(state, dx, lr, name)
        return result

    def _zeros(self, state: dict[str, np.ndarray], key: str, like: np.ndarray) -> np.ndarray:
        if key not in state:
            state[key] = np.zeros_like(like)
        return state[key]

    def _sgd(
        self, state: dict[str, np.ndarray], dx: np.ndarray, lr: float, name: str
    ) -> np.ndarray:
        return -lr * dx

    def _momentum(
        self, state: dict[str, np.ndarray], dx: np.ndarray, lr: float, name: str
    ) -> np.ndarray:
        v = self._zeros(state, "v", dx)
        v *= self.mu
        v -= lr * dx
        return v.copy()

    def _nesterov(
        self, state: dict[str, np.ndarray], dx: np.ndarray, lr: float, name: str
    ) -> np.ndarray:
        v_prev = self._zeros(state, "v", dx)
        v = self.mu * v_prev - lr * dx
        state["v"] = v
        return -self.mu * v_prev + (1 + self.mu) * v

    def _adagrad(
        self, state: dict[str, np.ndarray], dx: np.ndarray, lr: float, name: str
    ) -> np.ndarray:
        cache = self._zeros(state, "cache", dx)
        cache += dx**2
        update: np.ndarray = -lr * dx / (np.sqrt(cache) + self.eps)
        return update

    def _rmsprop(
        self, state: dict[str, np.ndarray], dx: np.ndarray, lr: float, name: str
    ) -> np.ndarray:
        cache = self._zeros(state, "cache", dx)
        cache *= self.decay_rate
        cache += (1 - self.decay_rate) * dx**2
        update: np.ndarray = -lr * dx / (np.sqrt(cache) + self.eps)
        return update

    def _adam(
        self, state: dict[str, np.ndarray], dx: np.ndarray, lr: float, name: str
    ) -> np.ndarray:
        m = self._zeros(state, "m", dx)
        v = self._zeros(state, "v", dx)
        t = self.steps[name] = self.steps.get(name, 0) + 1
        m *= self.beta1
        m += (1 - self.beta1) * dx
        v *= self.beta2
        v += (1 - self.beta2) * dx**2
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        return -lr * m_hat / (np.sqrt(v_hat) + self.eps)
