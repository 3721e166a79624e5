"""gflow: the exact gradient flow of ReLU networks, its conserved quantities and their topology.

``import gflow as gf``; everything public is re-exported here. THEORY.md-style math is in
each function's docstring.
"""

from .nets.schemes import Scheme as Scheme, kaiming as kaiming, normal as normal, xavier as xavier
from .data import Dataset as Dataset, breast_cancer as breast_cancer, teacher_student as teacher_student, toy as toy
from .discrete import OPTIMIZERS as OPTIMIZERS, train as train
from .flow.events import (
    GradNormBelow as GradNormBelow,
    LossBelow as LossBelow,
    NeuronDies as NeuronDies,
    OutputSignChange as OutputSignChange,
)
from .flow.solve import KINKS as KINKS, SOLVERS as SOLVERS, gradient_flow as gradient_flow
from .nets.relocate import relocate as relocate
from .invariants import (
    conserved as conserved,
    drift as drift,
    project as project,
    rescale as rescale,
    unit_norms as unit_norms,
)
from .losses import bce as bce, cross_entropy as cross_entropy, get_loss as get_loss, mse as mse
from .nets.models import (
    MLP as MLP,
    DAGNet as DAGNet,
    Graph as Graph,
    ShallowReLU as ShallowReLU,
    as_dag as as_dag,
    model_from_spec as model_from_spec,
    model_spec as model_spec,
)
from .trajectory import Status as Status, Trajectory as Trajectory, status_name as status_name

__version__ = "0.1.0"
from .topology.shallow import (
    betti_numbers as betti_numbers,
    component_label as component_label,
    effective_label as effective_label,
    n_components as n_components,
    n_effective_components as n_effective_components,
    neuron_counts as neuron_counts,
    obstruction_probability as obstruction_probability,
    obstruction_probability_mc as obstruction_probability_mc,
    poincare_polynomial as poincare_polynomial,
)
from .topology.dag import (
    dag_components as dag_components,
    dag_rigid_edges as dag_rigid_edges,
    is_singular as is_singular,
    singular_subnetworks as singular_subnetworks,
)
from .topology.symmetry import (
    CanonicalForm as CanonicalForm,
    canonical_form as canonical_form,
    equivalent as equivalent,
    permute as permute,
    reachable as reachable,
    recovered as recovered,
)
