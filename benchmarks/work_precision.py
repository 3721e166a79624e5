"""Work–precision: the exact flow's solvers vs GD on breast cancer and the toy problem.

    python benchmarks/work_precision.py [--quick | --size smoke|quick|full] [--out DIR]

Writes ``work_precision.md``/``.csv``/``.png`` (see :mod:`gflow.bench.work_precision`).
"""

from gflow.bench import script

if __name__ == "__main__":
    script("work_precision")
