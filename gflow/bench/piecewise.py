"""An independent reference for ReLU flows through kinks: NumPy field, SciPy stepping and event location.

Between two changes of the activation pattern the flow of a bias-free ReLU net is the flow of a
polynomial field (every ``relu(z)`` replaced by ``P z``, ``P`` fixed). :func:`piecewise_flow`
integrates each piece with SciPy's DOP853 (a hand-written NumPy forward and backward pass, no JAX,
no gflow solver code), ends it at the first sign change of a pre-activation (one event,
``min_kj sigma_kj z_kj`` with ``sigma = 2 P - 1``: it reaches 0 from above at the first crossing;
SciPy finds the root on the step's dense output to about machine precision), flips that pair's
pattern and goes on. A pair that its new piece drives straight back across the kink is on an
attractive kink (a Filippov sliding mode, which a piecewise integration cannot follow): the
function then stops and says so (``status="sliding"``) instead of chattering. The same stop
happens at degenerate kinks of deep nets (a second-layer unit at a point where every first-layer
unit is inactive has pre-activation 0 on both sides), and the sign test is a finite difference:
on an MLP the stopping time can depend on ``t1`` (the step sequence). Compare at ``result.t``
(measured on the MLP (16, 16) of :mod:`gflow.bench.problems`: where it ran to its ``t1``
in 0.011 ... 0.07 it agreed with gflow's located Dopri8 at 1e-12 to 3-11 x 1e-12).

Networks: ``ShallowReLU`` and ``MLP`` without biases and with one output; losses ``mse``
(``1/(2n) sum (f - y)^2``) and ``bce`` (``mean(softplus(f) - y f)``), as :mod:`gflow.losses`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.integrate import solve_ivp

__all__ = ["piecewise_flow", "PiecewiseResult"]


@dataclasses.dataclass
class PiecewiseResult:
    """``theta``: the flat parameters (the order of :func:`gflow.bench.problems.flat`) at the end
    time ``t``; ``pieces``: smooth pieces integrated; ``status``: ``"successful"``, ``"sliding"``
    (stopped at an attractive kink at ``t``) or ``"max_pieces"``."""

    theta: np.ndarray
    t: float
    pieces: int
    status: str
    steps: int
    events: list = dataclasses.field(default_factory=list)  # (t, unit, point, side after) per kink


def _mats(model) -> list[np.ndarray]:
    if hasattr(model, "weights"):  # MLP
        if any(b is not None for b in model.biases):
            raise ValueError("piecewise_flow: bias-free networks only.")
        return [np.asarray(w, np.float64) for w in model.weights]
    if getattr(model, "bias", False) or getattr(model, "b", None) is not None:
        raise ValueError("piecewise_flow: bias-free networks only.")
    return [np.asarray(model.W, np.float64), np.asarray(model.V, np.float64)]


def piecewise_flow(model, data, loss: str, t1: float, rtol: float = 1e-12, max_pieces: int = 100_000):
    """Integrate ``d theta/dt = -grad L`` of ``model`` (bias-free ``ShallowReLU`` or ``MLP``, one
    output) on ``data`` to ``t1`` piece by piece (module docstring)."""
    mats = _mats(model)
    shapes = [m.shape for m in mats]
    sizes = np.cumsum([0] + [m.size for m in mats])
    x = np.asarray(data.x_train, np.float64).T  # (d, n)
    y = np.asarray(data.y_train, np.float64).reshape(1, -1)
    n = x.shape[1]
    if shapes[-1][0] != 1:
        raise ValueError("piecewise_flow: one output only.")

    def unpack(th):
        return [th[sizes[i] : sizes[i + 1]].reshape(s) for i, s in enumerate(shapes)]

    def pre(th):  # all hidden pre-activations, (units, n), with the true ReLU
        ws, a, zs = unpack(th), x, []
        for W in ws[:-1]:
            z = W @ a
            zs.append(z)
            a = np.maximum(z, 0.0)
        return np.concatenate(zs)

    def field(t, th, P):
        ws = unpack(th)
        a, acts, start = x, [x], 0
        for W in ws[:-1]:
            z = W @ a
            a = P[start : start + len(z)] * z
            start += len(z)
            acts.append(a)
        out = ws[-1] @ a
        g = (out - y) / n if loss == "mse" else (1.0 / (1.0 + np.exp(-out)) - y) / n
        grads = [np.empty(0)] * len(ws)
        grads[-1] = g @ acts[-1].T
        delta = ws[-1].T @ g
        for i in range(len(ws) - 2, -1, -1):
            start -= ws[i].shape[0]
            dz = P[start : start + ws[i].shape[0]] * delta
            grads[i] = dz @ acts[i].T
            delta = ws[i].T @ dz
        return -np.concatenate([gr.ravel() for gr in grads])

    th = np.concatenate([m.ravel() for m in mats])
    z = pre(th)
    P = (z > 0).astype(np.float64)
    t, pieces, steps, status, events = 0.0, 0, 0, "successful", []
    scale = np.max(np.abs(z))
    while t < t1:
        if pieces >= max_pieces:
            status = "max_pieces"
            break
        sigma = 2.0 * P - 1.0
        # the pair just flipped may start a hair on its old side (SciPy's root within rounding):
        # its term is shifted to start at a small positive value, so that the event starts > 0 and
        # its next zero is the next crossing (a root at the start would end the piece at once)
        start_vals = sigma * pre(th)
        shift = np.where(start_vals > 0, 0.0, start_vals - np.maximum(-start_vals, 1e-14 * scale))

        def event(t, th, _P, sigma=sigma, shift=shift):  # solve_ivp passes its args to events too
            return np.min(sigma * pre(th) - shift)

        event.terminal = True
        event.direction = -1
        sol = solve_ivp(field, (t, t1), th, method="DOP853", rtol=rtol, atol=rtol, args=(P,), events=event)
        pieces += 1
        steps += int(sol.t.size - 1)
        t, th = float(sol.t[-1]), sol.y[:, -1]
        if sol.status != 1:
            break
        z = pre(th)
        pair = np.unravel_index(np.argmin(sigma * z - shift), z.shape)
        P[pair] = 1.0 - P[pair]
        events.append((t, int(pair[0]), int(pair[1]), int(P[pair])))
        # the new piece must carry the pair away from its kink (sigma z increasing): otherwise
        # both sides drive it into the kink, a sliding mode
        h = 1e-7 * scale / max(np.max(np.abs(field(t, th, P))), 1e-300)
        rate = (pre(th + h * field(t, th, P))[pair] - z[pair]) / h
        if (2.0 * P[pair] - 1.0) * rate < 0:
            status = "sliding"
            break
    return PiecewiseResult(th, t, pieces, status, steps, events)
