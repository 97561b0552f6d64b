"""The store replicated by Raft (docs/RAFT.md, "The store on Raft").

One concept per module:

* :mod:`.codec`     request value <-> log entry bytes (compact, versioned)
* :mod:`.requests`  the cluster's own requests (lease keep-alive, member attributes)
* :mod:`.store`     ClusterStore: writes proposed and applied in log order
* :mod:`.waiters`   proposal id -> the caller waiting for its apply
* :mod:`.dedup`     a re-proposed request is applied once
* :mod:`.reads`     linearizable reads through ReadIndex
* :mod:`.snapshot`  store snapshots for lagging and new members
* :mod:`.peers`     --initial-cluster parsing, member and cluster ids
* :mod:`.member`    one member: log + transport + driver + store
* :mod:`.serving`   what the gRPC server asks of a member
"""

from .member import ClusterMember, open_cluster_store
from .store import ClusterStore

__all__ = ["ClusterMember", "ClusterStore", "open_cluster_store"]
