"""gflow: the exact gradient flow of ReLU networks, its conserved quantities and their topology.

``import gflow as gf``; everything public is re-exported here. The mathematics is in each
function's docstring and on the theory page of the documentation (docs/theory.md).
"""

from types import ModuleType as _ModuleType

from ._cache import enable_compilation_cache as enable_compilation_cache
from ._version import version as _version
from .conservation import Conservation as Conservation
from .conservation import NoConservedQuantities as NoConservedQuantities
from .conservation import conservation_of as conservation_of
from .data import Dataset as Dataset
from .data import breast_cancer as breast_cancer
from .data import teacher_student as teacher_student
from .data import toy as toy
from .discrete import OPTIMIZERS as OPTIMIZERS
from .discrete import train as train
from .endpoints import Endpoint as Endpoint
from .endpoints import classify_endpoint as classify_endpoint
from .endpoints import data_objective as data_objective
from .flow import KINKS as KINKS
from .flow import SOLVERS as SOLVERS
from .flow import FlowProblem as FlowProblem
from .flow import gradient_flow as gradient_flow
from .flow import make_problem as make_problem
from .flow.events import (
    GradNormBelow as GradNormBelow,
)
from .flow.events import (
    LossBelow as LossBelow,
)
from .flow.events import (
    NeuronDies as NeuronDies,
)
from .flow.events import (
    OutputSignChange as OutputSignChange,
)
from .invariants import (
    conserved as conserved,
)
from .invariants import (
    drift as drift,
)
from .invariants import (
    project as project,
)
from .invariants import (
    relocate as relocate,
)
from .invariants import (
    rescale as rescale,
)
from .invariants import (
    unit_norms as unit_norms,
)
from .laws import LieRankInfo as LieRankInfo
from .laws import count_conservation_laws as count_conservation_laws
from .losses import bce as bce
from .losses import cross_entropy as cross_entropy
from .losses import get_loss as get_loss
from .losses import mse as mse
from .nets import (
    MLP as MLP,
)
from .nets import (
    AbstractReLUNet as AbstractReLUNet,
)
from .nets import (
    DAGNet as DAGNet,
)
from .nets import (
    FixedOutputReLU as FixedOutputReLU,
)
from .nets import (
    Graph as Graph,
)
from .nets import (
    Scheme as Scheme,
)
from .nets import (
    ShallowReLU as ShallowReLU,
)
from .nets import (
    as_dag as as_dag,
)
from .nets import (
    fixed_output as fixed_output,
)
from .nets import (
    kaiming as kaiming,
)
from .nets import (
    model_from_spec as model_from_spec,
)
from .nets import (
    model_spec as model_spec,
)
from .nets import (
    normal as normal,
)
from .nets import (
    xavier as xavier,
)
from .population import (
    GaussianPopulation as GaussianPopulation,
)
from .population import (
    arccos_kernel as arccos_kernel,
)
from .population import (
    gaussian_population as gaussian_population,
)
from .population import (
    population_loss as population_loss,
)
from .population import (
    toy_population as toy_population,
)
from .population import (
    toy_teacher as toy_teacher,
)
from .reach_probability import unreachable_probability as unreachable_probability
from .topology import (
    CanonicalForm as CanonicalForm,
)
from .topology import (
    betti_numbers as betti_numbers,
)
from .topology import (
    canonical_form as canonical_form,
)
from .topology import (
    component_label as component_label,
)
from .topology import (
    dag_components as dag_components,
)
from .topology import (
    dag_rigid_edges as dag_rigid_edges,
)
from .topology import (
    data_resolution as data_resolution,
)
from .topology import (
    effective_label as effective_label,
)
from .topology import (
    equivalent as equivalent,
)
from .topology import (
    is_singular as is_singular,
)
from .topology import (
    n_components as n_components,
)
from .topology import (
    n_effective_components as n_effective_components,
)
from .topology import (
    neuron_counts as neuron_counts,
)
from .topology import (
    obstruction_probability as obstruction_probability,
)
from .topology import (
    obstruction_probability_mc as obstruction_probability_mc,
)
from .topology import (
    permute as permute,
)
from .topology import (
    poincare_polynomial as poincare_polynomial,
)
from .topology import (
    reachable as reachable,
)
from .topology import (
    recovered as recovered,
)
from .topology import (
    singular_subnetworks as singular_subnetworks,
)
from .topology import (
    teacher_geometry as teacher_geometry,
)
from .trajectory import Status as Status
from .trajectory import Trajectory as Trajectory
from .trajectory import status_name as status_name

__version__ = _version("gflow")

__all__ = sorted(
    name for name, value in globals().items() if not name.startswith("_") and not isinstance(value, _ModuleType)
)
