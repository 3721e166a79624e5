"""Sweeps over initializations: config, problem factory, running, rows and the store."""

from .config import SweepConfig as SweepConfig
from .problems import dataset as dataset
from .problems import flow_problem as flow_problem
from .problems import make_init as make_init
from .problems import saved_times as saved_times
from .run import run_sweep as run_sweep
from .trajectories import load_trajectory as load_trajectory
