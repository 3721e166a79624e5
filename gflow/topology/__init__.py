"""Topology of the invariant set: shallow nets (Betti numbers, components, labels,
obstruction probability), DAG nets (rigid edges, components, singular sub-networks) and
the symmetry classification (canonical forms, reachability)."""

from .dag import dag_components as dag_components, dag_rigid_edges as dag_rigid_edges
from .dag import is_singular as is_singular, singular_subnetworks as singular_subnetworks
from .shallow import (
    TOL as TOL,
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
from .symmetry import CanonicalForm as CanonicalForm, canonical_form as canonical_form, equivalent as equivalent
from .symmetry import permute as permute, reachable as reachable, recovered as recovered
