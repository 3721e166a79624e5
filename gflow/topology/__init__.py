"""Topology of the invariant set: shallow nets (Betti numbers, components, labels,
obstruction probability), DAG nets (rigid edges, components, singular sub-networks) and
the symmetry classification (canonical forms, reachability)."""

from .dag import dag_components as dag_components
from .dag import dag_rigid_edges as dag_rigid_edges
from .dag import is_singular as is_singular
from .dag import singular_subnetworks as singular_subnetworks
from .shallow import (
    TOL as TOL,
)
from .shallow import (
    betti_numbers as betti_numbers,
)
from .shallow import (
    component_label as component_label,
)
from .shallow import (
    effective_label as effective_label,
)
from .shallow import (
    n_components as n_components,
)
from .shallow import (
    n_effective_components as n_effective_components,
)
from .shallow import (
    neuron_counts as neuron_counts,
)
from .shallow import (
    obstruction_probability as obstruction_probability,
)
from .shallow import (
    obstruction_probability_mc as obstruction_probability_mc,
)
from .shallow import (
    poincare_polynomial as poincare_polynomial,
)
from .symmetry import CanonicalForm as CanonicalForm
from .symmetry import canonical_form as canonical_form
from .symmetry import data_resolution as data_resolution
from .symmetry import equivalent as equivalent
from .symmetry import permute as permute
from .symmetry import reachable as reachable
from .symmetry import recovered as recovered
from .symmetry import teacher_geometry as teacher_geometry
