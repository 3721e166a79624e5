"""Figure 'breast_cancer' (gflow figure breast_cancer): run or reuse its experiment, draw PNG + PDF.

Usage: python scripts/fig_breast_cancer.py [--quick] [--out DIR]  (default: results/breast_cancer)
"""

import sys

from gflow.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("breast_cancer"))
