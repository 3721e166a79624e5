"""SweepConfig.recover_tol: validated, passed to gflow.recovered, and absent from the config
dict (so from the config hash) at its default."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import pytest

import gflow as gf
from gflow.sweep import rows as sweep_rows
from gflow.sweep.config import SweepConfig
from gflow.sweep.store import config_hash


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("nan"), "1e-3"])
def test_recover_tol_validated(bad):
    with pytest.raises(ValueError, match="recover_tol"):
        SweepConfig(recover_tol=bad)


def test_default_left_out_of_the_hash():
    """Stores written before the field existed keep their hash; a set value is recorded."""
    default = SweepConfig(data="teacher_student")
    assert "recover_tol" not in default.to_dict()
    assert SweepConfig.from_dict(default.to_dict()) == default
    loose = SweepConfig(data="teacher_student", recover_tol=0.05)
    assert loose.to_dict()["recover_tol"] == 0.05
    assert config_hash(loose.to_dict()) != config_hash(default.to_dict())
    assert SweepConfig.from_dict(loose.to_dict()) == loose


def test_teacher_flags_use_the_tolerance():
    """A student whose kink is 0.01 off the teacher's is recovered at tol 0.05, not at 1e-3."""
    teacher = gf.ShallowReLU(2, 2, key=jr.PRNGKey(0))
    teacher = eqx.tree_at(
        lambda m: (m.W, m.V), teacher, (jnp.array([[1.0, 0.0], [0.0, 1.0]]), jnp.array([[1.0, -1.0]]))
    )
    angle = 0.01
    student = eqx.tree_at(lambda m: m.W, teacher, jnp.array([[jnp.cos(angle), jnp.sin(angle)], [0.0, 1.0]]))
    params, static = eqx.partition(student, eqx.is_inexact_array)
    batched = jax.tree_util.tree_map(lambda x: x[None], params)  # one row
    values = dict(initial_params=batched, final_params=batched, final_loss=jnp.array([0.0]))
    assert not sweep_rows._teacher_flags(values, 0, teacher, static, SweepConfig().recover_tol)["recovered"]
    assert sweep_rows._teacher_flags(values, 0, teacher, static, 0.05)["recovered"]
