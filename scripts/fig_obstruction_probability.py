"""Figure 'obstruction_probability' (gflow figure obstruction_probability): run or reuse its experiment, draw PNG + PDF.

Usage: python scripts/fig_obstruction_probability.py [--quick] [--out DIR]  (default: results/obstruction_probability)
"""

import sys

from gflow.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("obstruction_probability"))
