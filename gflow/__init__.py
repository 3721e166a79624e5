"""gflow: the exact gradient flow of ReLU networks, its conserved quantities and their topology.

``import gflow as gf``; everything public is re-exported here. The mathematics is in each
function's docstring and on the theory page of the documentation (docs/theory.md).
"""

import importlib

from ._version import version as _version
from .data import Dataset as Dataset, breast_cancer as breast_cancer, teacher_student as teacher_student, toy as toy
from .discrete import OPTIMIZERS as OPTIMIZERS, train as train
from .flow import KINKS as KINKS, SOLVERS as SOLVERS, FlowProblem as FlowProblem, gradient_flow as gradient_flow
from .flow import make_problem as make_problem
from .flow.events import (
    GradNormBelow as GradNormBelow,
    LossBelow as LossBelow,
    NeuronDies as NeuronDies,
    OutputSignChange as OutputSignChange,
)
from .invariants import (
    conserved as conserved,
    drift as drift,
    project as project,
    relocate as relocate,
    rescale as rescale,
    unit_norms as unit_norms,
)
from .losses import bce as bce, cross_entropy as cross_entropy, get_loss as get_loss, mse as mse
from .nets import (
    MLP as MLP,
    AbstractReLUNet as AbstractReLUNet,
    DAGNet as DAGNet,
    Graph as Graph,
    Scheme as Scheme,
    ShallowReLU as ShallowReLU,
    as_dag as as_dag,
    kaiming as kaiming,
    model_from_spec as model_from_spec,
    model_spec as model_spec,
    normal as normal,
    xavier as xavier,
)
from .topology import (
    CanonicalForm as CanonicalForm,
    betti_numbers as betti_numbers,
    canonical_form as canonical_form,
    component_label as component_label,
    dag_components as dag_components,
    dag_rigid_edges as dag_rigid_edges,
    effective_label as effective_label,
    equivalent as equivalent,
    is_singular as is_singular,
    n_components as n_components,
    n_effective_components as n_effective_components,
    neuron_counts as neuron_counts,
    obstruction_probability as obstruction_probability,
    obstruction_probability_mc as obstruction_probability_mc,
    permute as permute,
    poincare_polynomial as poincare_polynomial,
    reachable as reachable,
    recovered as recovered,
    singular_subnetworks as singular_subnetworks,
)
from .endpoints import Endpoint as Endpoint, classify_endpoint as classify_endpoint, data_objective as data_objective
from .laws import LieRankInfo as LieRankInfo, count_conservation_laws as count_conservation_laws
from .population import (
    GaussianPopulation as GaussianPopulation,
    arccos_kernel as arccos_kernel,
    gaussian_population as gaussian_population,
    population_loss as population_loss,
    toy_population as toy_population,
    toy_teacher as toy_teacher,
)
from .reach_probability import unreachable_probability as unreachable_probability
from .trajectory import Status as Status, Trajectory as Trajectory, status_name as status_name

__version__ = _version("gflow")

__all__ = sorted(name for name, value in globals().items() if not name.startswith("_") and not isinstance(value, type(importlib)))
