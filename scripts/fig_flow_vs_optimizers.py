"""Figure 'flow_vs_optimizers' (gflow figure flow_vs_optimizers): run or reuse its experiment, draw PNG + PDF.

Usage: python scripts/fig_flow_vs_optimizers.py [--quick] [--out DIR]  (default: results/flow_vs_optimizers)
"""

import sys

from gflow.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("flow_vs_optimizers"))
