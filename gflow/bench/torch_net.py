"""The gradient-flow field of a benchmark problem in PyTorch (CPU, float64), for torchdiffeq.

The same network (``f(x) = V relu(W x)``, no bias), the same data and the same initial
weights as the JAX problem, with the parameters flattened in the same order as
:func:`gflow.bench.problems.flat` (``W`` row-major, then ``V``), so a torchdiffeq solution
is compared with the JAX reference directly. Needs the optional ``bench`` extra
(``pip install -e ".[bench]"``); :func:`available` says whether it is installed.
"""

# torch and torchdiffeq are the optional `bench` extra: every import of them below is inside a
# function, and type checks (CI installs only the `test` extra) must not need them.
# pyright: reportMissingImports=false

from __future__ import annotations

import numpy as np

from ..nets.shallow import ShallowReLU
from .problems import Problem


def available() -> str | None:
    """``None`` when torch and torchdiffeq import, else the reason they do not."""
    try:
        import torch  # noqa: F401
        import torchdiffeq  # noqa: F401
    except ImportError as err:
        return f'{err}; install the bench extra: pip install -e ".[bench]"'
    return None


def _loss(name: str):
    import torch

    if name == "bce":
        return lambda z, y: torch.mean(torch.sum(torch.nn.functional.softplus(z) - y * z, dim=-1))
    if name == "mse":
        return lambda z, y: 0.5 * torch.mean(torch.sum((z - y) ** 2, dim=-1))
    raise ValueError(f"the torch peer supports the losses bce and mse, got {name!r}.")


def torch_field(problem: Problem):
    """``(field, theta0, counter)``: ``field(t, theta) = -grad L(theta)`` on flat float64
    tensors, the initial parameters, and a one-element list counting field calls."""
    import torch

    model = problem.model
    if not isinstance(model, ShallowReLU):
        raise ValueError("the torch peer supports shallow nets (ShallowReLU) only.")
    if model.b is not None:
        raise ValueError("the torch peer supports shallow nets without biases only.")
    W, V = np.asarray(model.W, np.float64), np.asarray(model.V, np.float64)
    width, d = W.shape
    out = V.shape[0]
    x = torch.from_numpy(np.array(problem.data.x_train, np.float64))
    y = torch.from_numpy(np.array(problem.data.y_train, np.float64))
    loss = _loss(problem.loss)
    calls = [0]

    def field(t, theta):
        calls[0] += 1
        with torch.enable_grad():
            th = theta.detach().requires_grad_(True)
            pred = torch.relu(x @ th[: width * d].view(width, d).T) @ th[width * d :].view(out, width).T
            (g,) = torch.autograd.grad(loss(pred, y), th)
        return -g

    return field, torch.from_numpy(np.concatenate([W.ravel(), V.ravel()])), calls


def solve(problem: Problem, rtol: float, atol: float, method: str = "dopri5"):
    """``(final flat params as NumPy, field calls, status)`` of ``torchdiffeq.odeint`` on [0, t1]."""
    import torch
    from torchdiffeq import odeint

    field, theta0, calls = torch_field(problem)
    try:
        sol = odeint(
            field, theta0, torch.tensor([0.0, problem.t1], dtype=torch.float64), rtol=rtol, atol=atol, method=method
        )
    except AssertionError as err:  # torchdiffeq asserts on underflowing steps
        return np.full(theta0.shape, np.nan), calls[0], f"failed: {err}"
    return sol[-1].detach().numpy(), calls[0], "successful"
