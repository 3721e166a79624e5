"""Data sets: :class:`Dataset`, ``breast_cancer``, ``toy`` (docs/theory.md §5), ``teacher_student``."""

from __future__ import annotations

import functools
from typing import Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

__all__ = ["Dataset", "breast_cancer", "toy", "teacher_student", "DATASETS"]


class _Teacher(Protocol):
    """What :func:`teacher_student` needs of a teacher: an input size and a call on one input
    (a :class:`gflow.ShallowReLU` or :class:`gflow.MLP`)."""

    in_size: int

    def __call__(self, x: Array, /) -> Array: ...


class Dataset(eqx.Module):
    """Training arrays ``x_train (n, d)``, ``y_train (n, e)`` and optional test arrays.

    Inputs can have more axes, ``(n, ...)`` (e.g. ``(n, channels, height, width)`` for a
    convolutional network): each ``x_train[i]`` is one input. ``in_size`` is defined for
    ``(n, d)`` inputs only."""

    x_train: Float[Array, "n d"]
    y_train: Float[Array, "n e"]
    x_test: Float[Array, "m d"] | None = None
    y_test: Float[Array, "m e"] | None = None

    def __init__(self, x_train, y_train, x_test=None, y_test=None):
        self.x_train, self.y_train = _pair(x_train, y_train, "train")
        if (x_test is None) != (y_test is None):
            raise ValueError("x_test and y_test must be given together.")
        if x_test is None:
            self.x_test = self.y_test = None
        else:
            self.x_test, self.y_test = _pair(x_test, y_test, "test")
            if self.x_test.shape[1:] != self.x_train.shape[1:]:
                raise ValueError("x_test must have as many features as x_train.")

    @property
    def in_size(self) -> int:
        if self.x_train.ndim != 2:
            raise ValueError(f"in_size is defined for inputs of shape (n, d); these have shape {self.x_train.shape}.")
        return self.x_train.shape[1]

    @property
    def out_size(self) -> int:
        return self.y_train.shape[1]

    @property
    def has_test(self) -> bool:
        return self.x_test is not None

    @property
    def is_population(self) -> bool:
        """``False``: a finite sample (a :class:`gflow.GaussianPopulation` answers ``True``)."""
        return False

    def loss(self, model, loss_fn) -> Scalar:
        """The full-batch training loss ``L(theta) = loss_fn(f_theta(x_i) for all i, y)``.

        Every flow, optimizer and sweep reads a data object's loss through this method, so
        a :class:`gflow.GaussianPopulation` (whose ``loss`` is the closed-form expectation)
        can stand wherever a ``Dataset`` does."""
        return loss_fn(jax.vmap(model)(self.x_train), self.y_train)


def _pair(x, y, split):
    dtype = jnp.result_type(float)
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    if x.ndim < 2:
        raise ValueError(f"x_{split} must have shape (n, in_size) or (n, ...), got {x.shape}.")
    y = y.reshape(len(y), -1) if y.ndim == 1 else y
    if y.ndim != 2 or len(y) != len(x) or len(x) == 0:
        raise ValueError(f"y_{split} must have shape (n,) or (n, out) with n = len(x_{split}) > 0, got {y.shape}.")
    return x, y


def breast_cancer(seed: int = 0, test_fraction: float = 0.3) -> Dataset:
    """Wisconsin diagnostic breast cancer (scikit-learn's copy): 569 x 30, labels {0, 1}.

    A stratified train/test split fixed by ``seed``; features standardized with the mean
    and standard deviation of the training split only.
    """
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    x, y = load_breast_cancer(return_X_y=True)
    split = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    x_tr, x_te, y_tr, y_te = (np.asarray(a) for a in split)  # arrays already; typed as a list
    mu, sd = x_tr.mean(0), x_tr.std(0)
    return Dataset((x_tr - mu) / sd, y_tr.astype(np.float64), (x_te - mu) / sd, y_te.astype(np.float64))


def toy(n: int = 8000, key: PRNGKeyArray | None = None, n_test: int | None = None) -> Dataset:
    """The toy problem of docs/theory.md §5: ``x ~ N(0, I_2)``, ``y = relu(x_1) - relu(x_2)``.

    The target needs one negative output weight. ``n_test`` (default ``n // 4``) more
    points form the test split.
    """
    key = jr.PRNGKey(0) if key is None else key
    n_test = n // 4 if n_test is None else n_test
    x, y = _toy_arrays(key, n, n_test)
    return Dataset(x[0], y[0], x[1] if n_test else None, y[1] if n_test else None)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _toy_arrays(key, n: int, n_test: int):
    """The toy's (train, test) inputs and targets, in one compiled program (a fresh process
    otherwise compiles and runs a dozen small operations)."""
    x = jr.normal(key, (n + n_test, 2), jnp.result_type(float))
    y = jax.nn.relu(x[:, 0]) - jax.nn.relu(x[:, 1])
    return (x[:n], x[n:]), (y[:n], y[n:])


def teacher_student(
    teacher_model: _Teacher, n: int, key: PRNGKeyArray, noise: float = 0.0, n_test: int | None = None
) -> Dataset:
    """Inputs ``x ~ N(0, I_d)``, targets ``teacher(x) + noise * N(0, 1)`` (train and test)."""
    n_test = n if n_test is None else n_test
    d = teacher_model.in_size
    kx, kn = jr.split(key)
    x = jr.normal(kx, (n + n_test, d), jnp.result_type(float))
    y = jax.vmap(teacher_model)(x)
    y = y + noise * jr.normal(kn, y.shape, y.dtype)
    return Dataset(x[:n], y[:n], x[n:] if n_test else None, y[n:] if n_test else None)


DATASETS = ("toy", "breast_cancer")
