"""Sweeps over initializations: config, problem factory, running, rows and the store."""

from .config import SweepConfig as SweepConfig
from .problems import dataset as dataset, flow_problem as flow_problem, make_init as make_init
from .problems import saved_times as saved_times
from .run import run_sweep as run_sweep
from .trajectories import load_trajectory as load_trajectory
