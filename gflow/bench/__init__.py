"""Benchmarks of gflow (issue 8): work–precision against gradient descent, peer tools, the
machine's limit and how sweeps scale. ``gflow bench [--quick]`` runs them all; the scripts
in ``benchmarks/`` run one each. Reports go to ``results/benchmarks/`` (Markdown + CSV + PNG).
"""
