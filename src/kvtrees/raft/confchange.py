"""Single-member configuration changes (Raft thesis §4.1).

One voter is added or removed at a time, so any majority of the old configuration
overlaps any majority of the new one and no joint consensus is needed. Changes take
effect when the entry is *applied*; the leader accepts a new change only after the
previous one was applied (``pending_conf_index``), and only after committing an entry
of its own term (the fix for the single-server change bug Ongaro describes).
Learners receive the log but never vote or count towards a quorum; ADD_NODE of a
learner promotes it; ADD_LEARNER of a voter demotes it
(for quorums the same as removing it).
"""

from __future__ import annotations

from typing import FrozenSet, Set, Tuple

from .errors import ConfChangeError
from .types import ConfChange, ConfChangeType, ConfState


def validate(cs: ConfState, cc: ConfChange) -> None:
    """Raise ConfChangeError if cc cannot be applied to cs."""
    if cc.node_id <= 0:
        raise ConfChangeError(f"conf change for invalid node id {cc.node_id}")
    if cc.type in (ConfChangeType.REMOVE_NODE, ConfChangeType.ADD_LEARNER):
        if set(cs.voters) == {cc.node_id}:
            raise ConfChangeError(f"removing or demoting {cc.node_id} would leave no voters")


def apply(cs: ConfState, cc: ConfChange) -> ConfState:
    """The configuration after cc. A no-op change (adding a present voter, removing an
    absent node) returns cs unchanged. O(members)."""
    validate(cs, cc)
    voters: Set[int] = set(cs.voters)
    learners: Set[int] = set(cs.learners)
    if cc.type == ConfChangeType.ADD_NODE:
        learners.discard(cc.node_id)
        voters.add(cc.node_id)
    elif cc.type == ConfChangeType.ADD_LEARNER:
        voters.discard(cc.node_id)  # demotion: for quorums, the same as a removal
        learners.add(cc.node_id)
    else:
        voters.discard(cc.node_id)
        learners.discard(cc.node_id)
    return ConfState(voters, learners)


def members(cs: ConfState) -> Tuple[FrozenSet[int], FrozenSet[int]]:
    """(voters, learners) of cs as frozensets."""
    return frozenset(cs.voters), frozenset(cs.learners)
