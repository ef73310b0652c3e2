"""The staleness gate alone (`hexrl.api.stalenessgate`): AReaL's rule, its bulk form, and bad shapes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexrl.api.stalenessgate import StalenessGate

pytestmark = pytest.mark.unit


def test_groups_of_two_fill_two_steps_ahead_with_eta_one():
    """G = 2, B = 4, η = 1: at version 0 the trajectories of steps 0 and 1 (8) may start, no more."""
    gate = StalenessGate(group_size=2, batch_trajectories=4, max_policy_lag=1)
    assert [gate.admits(n, version=0) for n in (0, 2, 4, 6, 8)] == [True, True, True, True, False]
    assert gate.room(0, version=0) == 4
    assert gate.room(8, version=0) == 0
    assert gate.room(8, version=1) == 2


def test_a_group_that_would_straddle_the_limit_waits():
    """B not a multiple of G (B = 3, G = 2, η = 0): the second group's last trajectory (number 3) would
    land in step 1, one step past version 0 + η, so only one group starts."""
    gate = StalenessGate(group_size=2, batch_trajectories=3, max_policy_lag=0)
    assert gate.admits(0, version=0)
    assert not gate.admits(2, version=0)
    assert gate.room(0, version=0) == 1


@given(
    group_size=st.integers(1, 8),
    batch=st.integers(1, 40),
    eta=st.integers(0, 6),
    version=st.integers(0, 50),
    admitted=st.integers(0, 2_000),
)
def test_room_counts_the_groups_admitted_one_by_one(group_size, batch, eta, version, admitted):
    """The bulk form (the simulator's) equals asking one group at a time (the coordinator's) until refused,
    and every trajectory it lets in lands in a step at most η after `version`."""
    gate = StalenessGate(group_size, batch, eta)
    one_by_one, n_r = 0, admitted
    while gate.admits(n_r, version):
        one_by_one += 1
        n_r += group_size
    assert gate.room(admitted, version) == one_by_one
    if one_by_one:
        last_trajectory = admitted + one_by_one * group_size - 1
        assert last_trajectory // batch <= version + eta


@pytest.mark.parametrize(
    ("shape", "field"),
    [((0, 4, 1), "groupSize"), ((2, 0, 1), "promptsPerStep"), ((2, 4, -1), "maxPolicyLag")],
)
def test_a_bad_shape_is_refused_naming_the_field(shape, field):
    with pytest.raises(ValueError, match=field):
        StalenessGate(*shape)
