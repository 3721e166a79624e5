"""Figure 'endpoints' (gflow figure endpoints): run or reuse its experiment, draw PNG + PDF.

Usage: python scripts/fig_endpoints.py [--quick] [--out DIR]  (default: results/endpoints)
"""

import sys

from gflow.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("endpoints"))
