"""Figure 'hyperquadrics' (gflow figure hyperquadrics): run or reuse its experiment, draw PNG + PDF.

Usage: python scripts/fig_hyperquadrics.py [--quick] [--out DIR]  (default: results/hyperquadrics)
"""

import sys

from gflow.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("hyperquadrics"))
