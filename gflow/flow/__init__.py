"""The exact gradient flow: one validated problem (:class:`FlowProblem`) consumed by the
single solve (:func:`gradient_flow`), the event path and the batched sweep engine."""

from .solve import KINKS as KINKS, SOLVERS as SOLVERS, gradient_flow as gradient_flow
