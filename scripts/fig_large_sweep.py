"""Figure 'large_sweep' (gflow figure large_sweep): run or reuse its experiment, draw PNG + PDF.

Usage: python scripts/fig_large_sweep.py [--quick] [--out DIR]  (default: results/large_sweep)
"""

import sys

from gflow.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("large_sweep"))
