"""Figure 'dag' (gflow figure dag): run or reuse its experiment, draw PNG + PDF.

Usage: python scripts/fig_dag.py [--quick] [--out DIR]  (default: results/dag)
"""

import sys

from gflow.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("dag"))
