"""The sweep engine's matmul FLOP/s vs the machine's float64/float32 peak; compile time and
throughput scaling with slots, width and data size.

    python benchmarks/machine_limit.py [--quick | --size smoke|quick|full] [--out DIR]

Writes ``machine_limit.md``/``.csv`` (see :mod:`gflow.bench.machine`).
"""

from gflow.bench import script

if __name__ == "__main__":
    script("machine")
