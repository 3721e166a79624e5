"""The exact gradient flow: one validated problem (:class:`FlowProblem`) consumed by the
single solve (:func:`gradient_flow`), the event path and the batched sweep engine."""

from .problem import KINKS as KINKS
from .problem import SOLVERS as SOLVERS
from .problem import FlowProblem as FlowProblem
from .problem import make_problem as make_problem
from .solve import gradient_flow as gradient_flow
from .solve import solve_flow as solve_flow
