"""Configuration of one Raft node."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .errors import RaftError
from .storage import NO_LIMIT, Storage


@dataclass
class Config:
    """Parameters of a Raft node. Times are in ticks: the application decides how long
    a tick is (etcd: 100 ms, election 10 ticks, heartbeat 1 tick).

    ``peers``/``learners`` bootstrap a brand-new node; a restarted node takes its
    membership from its snapshot and re-applies the conf changes after it.
    ``rng`` makes the randomized election timeout deterministic in simulation."""

    id: int
    storage: Storage
    peers: Sequence[int] = ()
    learners: Sequence[int] = ()
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = NO_LIMIT
    max_inflight_msgs: int = 256
    check_quorum: bool = True
    pre_vote: bool = True
    rng: Optional[random.Random] = field(default=None, repr=False)

    def validate(self) -> None:
        """Raise RaftError for impossible settings."""
        if self.id <= 0:
            raise RaftError(f"node id must be positive, not {self.id}")
        if self.heartbeat_tick <= 0:
            raise RaftError("heartbeat_tick must be > 0")
        if self.election_tick <= self.heartbeat_tick:
            raise RaftError("election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs <= 0:
            raise RaftError("max_inflight_msgs must be > 0")
        if self.max_size_per_msg <= 0:
            raise RaftError("max_size_per_msg must be > 0")
