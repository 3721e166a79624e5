"""Sweeps over initializations: config, problem factory, running, rows and the store."""

from .run import SweepConfig as SweepConfig, dataset as dataset, load_trajectory as load_trajectory
from .run import make_init as make_init, run_sweep as run_sweep, saved_times as saved_times
