"""Figure 'reachability' (gflow figure reachability): run or reuse its experiment, draw PNG + PDF.

Usage: python scripts/fig_reachability.py [--quick] [--out DIR]  (default: results/reachability)
"""

import sys

from gflow.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("reachability"))
