"""Figure 'toy_obstruction' (gflow figure toy_obstruction): run or reuse its experiment, draw PNG + PDF.

Usage: python scripts/fig_toy_obstruction.py [--quick] [--out DIR]  (default: results/toy_obstruction)
"""

import sys

from gflow.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("toy_obstruction"))
