"""gflow vs SciPy solve_ivp, torchdiffeq and naive vmap: time to equal error.

    python benchmarks/peers.py [--quick | --size smoke|quick|full] [--out DIR]

Runs gflow's own rows first (the work–precision reference and methods on the same problem),
then the peers; writes ``peers.md``/``.csv`` (see :mod:`gflow.bench.peers`). torchdiffeq
needs ``pip install -e ".[bench]"``; without it its row is skipped with a note.
"""

from gflow.bench import script

if __name__ == "__main__":
    script("peers")
