"""A Diffrax solver wrapper that forwards everything to the wrapped solver; subclasses
override ``step`` (and ``init``) to post-process each step (projection, pinning)."""

from __future__ import annotations

import diffrax
import equinox as eqx


class ForwardingSolver(diffrax.AbstractAdaptiveSolver, diffrax.AbstractWrappedSolver):
    solver: eqx.AbstractVar[diffrax.AbstractSolver]

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    @property
    def scan_kind(self):
        return getattr(self.solver, "scan_kind", None)

    @property
    def root_finder(self):  # implicit solvers: Diffrax sets the tolerances through this path
        solver = self.solver
        if not isinstance(solver, diffrax.AbstractImplicitSolver):
            raise AttributeError(f"{type(solver).__name__} has no root_finder (not an implicit solver).")
        return solver.root_finder

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        return self.solver.init(terms, t0, t1, y0, args)

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)
