"""Gaussian population losses in closed form: ``x ~ N(0, I_d)``, a ReLU student, a ReLU teacher.

For ``w, u`` in ``R^d`` with angle ``theta`` in ``[0, pi]`` the degree-1 arc-cosine kernel
(Cho & Saul 2009) is

``K(w, u) = E[relu(w.x) relu(u.x)] = (||w|| ||u|| sin(theta) + (pi - theta) w.u) / (2 pi)``,

with ``K(w, w) = ||w||^2 / 2``, and its gradient (Tian 2017)
``grad_w K(w, u) = ((pi - theta) u + ||u|| sin(theta) w / ||w||) / (2 pi)``.
For a student ``f(x) = V relu(W x)`` and a teacher ``g(x) = A relu(U x)`` the loss that
:func:`gflow.mse` computes on a sample, ``1/(2n) sum_i ||f(x_i) - y_i||^2``, has the limit

``L = 1/2 E ||f(x) - g(x)||^2 = 1/2 tr(C K C^T)``,  ``C = [V, -A]``,  ``K = K([W; U], [W; U])``

(plus ``noise^2 e / 2`` with label noise of standard deviation ``noise`` on ``e`` outputs),
see the theory page (docs/theory.md), population losses.

**Smoothness.** ``K`` is smooth where ``w, u != 0`` and not collinear, and ``C^2`` at
collinear pairs (there it is ``w.u/2 + O(theta^3)`` or ``O((pi - theta)^3)``), so a
population flow has no data kinks: kink handling (pinning, sliding) does not apply to it.
The only non-smooth set is ``w_k = 0`` (``K`` is 1-homogeneous in ``w``). The gradient is
supplied as a custom JVP (the formula above), evaluated with safe norms, so value,
gradient and Hessian are finite everywhere, including collinear pairs (where the Hessian
is exact) and ``w = 0``. At ``w = 0`` the gradient returned is ``0``: the value that
autodiff of a finite-sample loss gives with JAX's ``relu'(0) = 0``; it is one element of
the Clarke subdifferential, not a derivative.

**Biases** are not supported: the expectation ``E[relu(w.x + b) relu(u.x + c)]`` needs
bivariate normal CDFs and is not implemented; biased networks raise ``ValueError``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from .data import Dataset, teacher_student
from .losses import get_loss, mse
from .nets import FixedOutputReLU, ShallowReLU

__all__ = [
    "arccos_kernel",
    "population_loss",
    "GaussianPopulation",
    "gaussian_population",
    "toy_teacher",
    "toy_population",
]

_TWO_PI = 2 * jnp.pi


def _safe_norm(x):
    """``||x||`` with zero (not NaN) derivatives of every order at ``x = 0``."""
    sq = x @ x
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _geometry(w, u):
    """``(ok, w, u, ||w||^2, ||u||^2, w.u, s = ||w|| ||u|| sin(theta), theta)``, NaN-free.

    Where ``w`` or ``u`` is zero (``ok`` false) both are replaced by a fixed unit vector, so
    nothing divides by zero; callers mask those entries. ``s`` is ``||w|| ||r||`` with ``r``
    the part of ``u`` orthogonal to ``w``: accurate to rounding of ``u`` (no cancellation of
    ``||w||^2 ||u||^2 - (w.u)^2``), so ``theta = atan2(s, w.u)`` is accurate near 0 and pi.
    """
    nw2, nu2 = w @ w, u @ u
    ok = (nw2 > 0) & (nu2 > 0)
    unit = jnp.full_like(w, 1.0 / jnp.sqrt(w.shape[-1]))
    w, u = jnp.where(ok, w, unit), jnp.where(ok, u, unit)
    nw2, nu2 = w @ w, u @ u
    p = w @ u
    s = jnp.sqrt(nw2) * _safe_norm(u - (p / nw2) * w)
    theta = jnp.arctan2(s, p)
    return ok, w, u, nw2, nu2, p, s, theta


@jax.custom_jvp
def arccos_kernel(w: Float[Array, " d"], u: Float[Array, " d"]) -> Scalar:
    """``K(w, u) = E[relu(w.x) relu(u.x)]``, ``x ~ N(0, I_d)``: the degree-1 arc-cosine kernel.

    ``K = (||w|| ||u|| sin(theta) + (pi - theta) w.u) / (2 pi)``, ``theta`` the angle between
    ``w`` and ``u``; ``0`` when either vector is zero. Differentiable to any order with
    finite results (see the module docstring for the points where ``K`` is not smooth).

    **Arguments:** ``w``, ``u``: vectors of the same length ``d``.

    **Returns:** the scalar ``K(w, u)``.
    """
    ok, w, u, _, _, p, s, theta = _geometry(w, u)
    return jnp.where(ok, (s + (jnp.pi - theta) * p) / _TWO_PI, 0.0)


@arccos_kernel.defjvp
def _arccos_kernel_jvp(primals, tangents):
    w, u = primals
    dw, du = tangents
    ok, w, u, nw2, nu2, p, s, theta = _geometry(w, u)
    value = jnp.where(ok, (s + (jnp.pi - theta) * p) / _TWO_PI, 0.0)
    # grad_w K = ((pi - theta) u + ||u|| sin(theta) w/||w||) / 2pi, and ||u|| sin(theta)/||w|| = s/||w||^2
    gw = ((jnp.pi - theta) * u + (s / nw2) * w) / _TWO_PI
    gu = ((jnp.pi - theta) * w + (s / nu2) * u) / _TWO_PI
    return value, jnp.where(ok, gw @ dw + gu @ du, 0.0)


def _gram(W: Float[Array, "k d"]) -> Float[Array, "k k"]:
    """``K(W[i], W[j])`` for all pairs; the diagonal is the smooth ``||w||^2 / 2``."""
    off = jax.vmap(lambda a: jax.vmap(lambda b: arccos_kernel(a, b))(W))(W)
    diag = 0.5 * jnp.sum(W * W, axis=1)
    return jnp.where(jnp.eye(W.shape[0], dtype=bool), diag[:, None], off)


def _check_net(net, name: str) -> None:
    if not isinstance(net, ShallowReLU):
        raise ValueError(f"{name} must be a gflow ShallowReLU, got {type(net).__name__}.")
    if net.b is not None:
        raise ValueError(
            f"the Gaussian population loss has no closed form here for biased networks ({name} has biases): "
            "it would need bivariate normal CDFs. Use bias=False, or a finite sample (gf.teacher_student)."
        )


def _pad(W: Float[Array, "m d0"], d: int) -> Float[Array, "m d"]:
    return jnp.pad(W, ((0, 0), (0, d - W.shape[1])))


def population_loss(student: ShallowReLU, teacher: ShallowReLU, noise: float = 0.0) -> Scalar:
    """The expected MSE ``L = 1/2 E ||f(x) - g(x) - noise eps||^2``, ``x ~ N(0, I_d)``, ``eps ~ N(0, I_e)``.

    In closed form ``L = 1/2 tr(C K C^T) + noise^2 e / 2`` with ``C = [V, -A]`` and ``K``
    the arc-cosine Gram matrix of the stacked incoming weights ``[W; U]`` (module
    docstring). This is the ``n -> infinity`` limit of
    ``gf.mse`` on ``gf.teacher_student(teacher, n, key, noise=noise)``. A teacher with fewer
    inputs than the student acts on the first ``teacher.in_size`` coordinates.

    **Arguments:**
    - ``student``, ``teacher``: :class:`gflow.ShallowReLU` networks without biases, with
      the same ``out_size`` and ``teacher.in_size <= student.in_size``.
    - ``noise``: standard deviation of the label noise (default 0).

    **Returns:** the scalar ``L``. Near ``L = 0`` it carries rounding of order
    ``1e-16 ||C||^2 ||K||`` (a difference of O(1) terms), so it can be a tiny negative number.
    """
    _check_net(student, "student")
    _check_net(teacher, "teacher")
    if teacher.out_size != student.out_size:
        raise ValueError(
            f"student and teacher must have the same out_size, got {student.out_size} and {teacher.out_size}."
        )
    if teacher.in_size > student.in_size:
        raise ValueError(
            f"the teacher has more inputs ({teacher.in_size}) than the student ({student.in_size}); "
            "the student must see every input the teacher reads."
        )
    W = jnp.concatenate([student.W, _pad(teacher.W, student.in_size).astype(student.W.dtype)], axis=0)
    C = jnp.concatenate([student.V, -teacher.V.astype(student.V.dtype)], axis=1)
    return 0.5 * jnp.sum((C @ _gram(W)) * C) + 0.5 * noise**2 * student.out_size


class GaussianPopulation(eqx.Module):
    """The population of a teacher–student problem: ``x ~ N(0, I_d)``, ``y = teacher(x) + noise eps``.

    A data object for the expected loss: it has no training arrays. Where gflow takes a
    :class:`gflow.Dataset`, a population is meant to answer through :meth:`loss`, which a
    finite data set computes as ``full_batch_loss(model, x_train, y_train, loss_fn)``; its
    :meth:`sample` draws the matching finite data set. There is no test split: the
    population loss is already the expected (test) loss.

    **Fields:** ``teacher`` (a :class:`gflow.ShallowReLU` without biases, on ``in_size``
    inputs), ``noise`` (static: label noise standard deviation).
    """

    teacher: ShallowReLU
    noise: float = eqx.field(static=True, default=0.0)

    @property
    def in_size(self) -> int:
        return self.teacher.in_size

    @property
    def out_size(self) -> int:
        return self.teacher.out_size

    @property
    def has_test(self) -> bool:
        return False

    @property
    def is_population(self) -> bool:
        """``True``: no training points; the loss is the expectation (kink handling is off)."""
        return True

    def loss(self, model: ShallowReLU | FixedOutputReLU, loss_fn=mse) -> Scalar:
        """The expected loss of ``model``: :func:`population_loss` (only ``mse`` is available).
        A :class:`gflow.FixedOutputReLU` answers as its ``ShallowReLU`` with constant ``V``, so
        only ``W`` is differentiated."""
        if get_loss(loss_fn) is not mse:
            raise ValueError("a Gaussian population has a closed-form loss for mse only.")
        if isinstance(model, FixedOutputReLU):
            model = model.as_shallow()
        if model.in_size != self.in_size:
            raise ValueError(f"the model has {model.in_size} inputs, the population {self.in_size}.")
        return population_loss(model, self.teacher, self.noise)

    def sample(self, n: int, key: PRNGKeyArray, n_test: int | None = 0) -> Dataset:
        """``n`` draws of ``(x, y)``: exactly ``gf.teacher_student(teacher, n, key, noise, n_test)``."""
        return teacher_student(self.teacher, n, key, noise=self.noise, n_test=n_test)


def _embedded(teacher: ShallowReLU, d: int) -> ShallowReLU:
    """The teacher as a network on ``R^d`` reading the first ``teacher.in_size`` coordinates."""
    if d == teacher.in_size:
        return teacher
    shell = ShallowReLU(d, teacher.width, teacher.out_size, key=jr.PRNGKey(0))
    return eqx.tree_at(lambda m: (m.W, m.V), shell, (_pad(teacher.W, d), teacher.V))


def gaussian_population(teacher: ShallowReLU, d: int | None = None, noise: float = 0.0) -> GaussianPopulation:
    """The Gaussian population of ``teacher``: ``x ~ N(0, I_d)``, ``y = teacher(x) + noise eps``.

    **Arguments:**
    - ``teacher``: a :class:`gflow.ShallowReLU` without biases.
    - ``d``: input dimension, at least ``teacher.in_size`` (default: equal); a larger ``d``
      adds inputs the teacher ignores.
    - ``noise``: label noise standard deviation.

    **Returns:** a :class:`GaussianPopulation`; ``.loss(model)`` is :func:`population_loss`.
    """
    _check_net(teacher, "teacher")
    d = teacher.in_size if d is None else d
    if not isinstance(d, int) or isinstance(d, bool) or d < teacher.in_size:
        raise ValueError(f"d must be an integer >= teacher.in_size = {teacher.in_size}, got {d!r}.")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}.")
    return GaussianPopulation(_embedded(teacher, d), float(noise))


def toy_teacher() -> ShallowReLU:
    """The toy target ``relu(x_1) - relu(x_2)`` of :func:`gflow.toy` as a teacher: ``U = I_2``, ``A = (1, -1)``."""
    shell = ShallowReLU(2, 2, 1, key=jr.PRNGKey(0))
    dtype = jnp.result_type(float)
    return eqx.tree_at(lambda m: (m.W, m.V), shell, (jnp.eye(2, dtype=dtype), jnp.array([[1.0, -1.0]], dtype)))


def toy_population(d: int = 2) -> GaussianPopulation:
    """The population version of :func:`gflow.toy`: ``x ~ N(0, I_d)``, ``y = relu(x_1) - relu(x_2)``.

    ``d = 2`` is the toy problem (theory page, experiments); its 8000-point data set is a
    sample of this population (same law of ``(x, y)``).
    """
    return gaussian_population(toy_teacher(), d)
