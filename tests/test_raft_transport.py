"""Raft over real sockets: the wire codec, the TCP transport, the threaded driver, and
3-member clusters on loopback behind fault-injecting proxies (tests/helpers/faultproxy.py).

Every socket binds 127.0.0.1; every test is bounded in time (waits have deadlines)
and closes every thread and socket it started. Each member's log is a FileLogStorage
in tmp_path (real fsync). No store or engine is involved.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from helpers.faultproxy import FaultProxy
from helpers.raft_cluster import LoopbackCluster, wait_for
from kvtrees.raft import (ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message,
                          MsgType, Snapshot, SnapshotMetadata)
from kvtrees.raft.codec import (FRAME_HEADER, WireError, check_frame, decode_message,
                                encode_message, frame, parse_frame_header)
from kvtrees.raft.transport import Transport

# ---- codec -------------------------------------------------------------------------------

entries_st = st.lists(st.builds(lambda t, i, d, c: Entry(t, i, d, EntryType(c)),
                                st.integers(0, 2**63), st.integers(0, 2**63),
                                st.binary(max_size=64), st.integers(0, 1)), max_size=5)
snap_st = st.none() | st.builds(
    lambda i, t, v, l, d: Snapshot(d, SnapshotMetadata(i, t, ConfState(v, l))),
    st.integers(0, 2**63), st.integers(0, 2**63), st.lists(st.integers(1, 2**63), max_size=5),
    st.lists(st.integers(1, 2**63), max_size=3), st.binary(max_size=128))


@settings(max_examples=200, deadline=None)
@given(t=st.sampled_from(list(MsgType)), ids=st.tuples(*[st.integers(0, 2**63)] * 7),
       reject=st.booleans(), ctx=st.binary(max_size=32), ents=entries_st, snap=snap_st)
def test_codec_round_trip(t, ids, reject, ctx, ents, snap):
    to, frm, term, lt, idx, commit, hint = ids
    m = Message(t, to=to, frm=frm, term=term, log_term=lt, index=idx, entries=ents,
                commit=commit, snapshot=snap, reject=reject, reject_hint=hint, context=ctx)
    back = decode_message(encode_message(m))
    for f in Message.__slots__:
        if f == "snapshot":
            continue
        assert getattr(back, f) == getattr(m, f), f
    if snap is None:
        assert back.snapshot is None
    else:
        assert back.snapshot.data == snap.data
        assert back.snapshot.metadata.conf_state == snap.metadata.conf_state
        assert (back.snapshot.metadata.index, back.snapshot.metadata.term) == \
            (snap.metadata.index, snap.metadata.term)


def sample_message():
    return Message(MsgType.APP, to=2, frm=1, term=3, log_term=2, index=7, commit=6,
                   entries=[Entry(3, 8, b"hello"), Entry(3, 9, b"world")])


def test_every_flipped_byte_of_a_frame_is_detected():
    f = frame(encode_message(sample_message()))
    for pos in range(len(f)):
        bad = bytearray(f)
        bad[pos] ^= 0x04
        with pytest.raises(WireError):
            length, crc = parse_frame_header(bytes(bad[:FRAME_HEADER]))
            payload = bytes(bad[FRAME_HEADER:FRAME_HEADER + length])
            if len(payload) != length:
                raise WireError("short frame")
            decode_message(check_frame(payload, crc))


def test_malformed_messages_are_wire_errors():
    good = encode_message(sample_message())
    for cut in range(len(good)):
        with pytest.raises(WireError):
            decode_message(good[:cut])
    with pytest.raises(WireError, match="trailing"):
        decode_message(good + b"x")
    with pytest.raises(WireError, match="type"):
        decode_message(b"\xff" + good[1:])
    with pytest.raises(WireError, match="limit"):
        parse_frame_header(b"\xff\xff\xff\xff\0\0\0\0")


# ---- transport -----------------------------------------------------------------------------

def test_transport_delivers_and_reports_failures():
    got, unreachable, snaps = [], [], []
    a = Transport(1, on_message=lambda m: None)
    b = Transport(2, on_message=got.append)
    try:
        a.on_unreachable = unreachable.append
        a.on_snapshot_status = lambda p, ok: snaps.append((p, ok))
        a.add_peer(2, b.addr)
        a.send([sample_message()])
        wait_for(lambda: got, what="delivery")
        assert got[0].entries[1].data == b"world"
        a.send([Message(MsgType.HEARTBEAT, to=9, frm=1, term=1)])  # unknown peer
        assert unreachable == [9]
        dead = Transport(3, on_message=lambda m: None)
        dead_addr = dead.addr
        dead.close()
        a.add_peer(3, dead_addr)
        a.send([Message(MsgType.SNAP, to=3, frm=1, term=1, snapshot=Snapshot(b"s"))])
        wait_for(lambda: (3, False) in snaps, what="snapshot failure report")
        a.send([Message(MsgType.SNAP, to=2, frm=1, term=1, snapshot=Snapshot(b"s"))])
        wait_for(lambda: (2, True) in snaps, what="snapshot success report")
    finally:
        a.close()
        b.close()


def test_first_message_after_a_peer_restart_is_delivered():
    """The peer restarts on the same address (a crashed member coming back): the next
    message goes over a new connection instead of into the old, dead one."""
    got = []
    b = Transport(2, on_message=got.append)
    a = Transport(1, on_message=lambda m: None)
    try:
        a.add_peer(2, b.addr)
        a.send([sample_message()])
        wait_for(lambda: got, what="delivery")
        addr = b.addr
        b.close()
        time.sleep(0.1)                         # b's FIN reaches a's idle socket
        b = Transport(2, on_message=got.append, listen=addr)
        a.send([sample_message()])              # one message, not a retry loop
        wait_for(lambda: len(got) == 2, what="delivery after the restart")
        assert a.stats.connects == 2 and a.stats.dropped == 0
    finally:
        a.close()
        b.close()


def test_corrupt_frame_closes_connection_and_sender_reconnects():
    got = []
    b = Transport(2, on_message=got.append)
    a = Transport(1, on_message=lambda m: None)
    proxy = FaultProxy(b.addr)
    try:
        a.add_peer(2, proxy.addr)
        proxy.corrupt_every = 1
        a.send([sample_message()])
        wait_for(lambda: b.stats.bad_frames >= 1, what="bad frame")
        assert not got
        proxy.corrupt_every = 0
        for _ in range(50):  # the first sends may hit the closed connection and be dropped
            a.send([sample_message()])
            time.sleep(0.02)
            if got:
                break
        assert got and a.stats.connects >= 2
    finally:
        a.close()
        b.close()
        proxy.close()


# ---- 3-member clusters on loopback -------------------------------------------------------

@pytest.fixture
def cluster(tmp_path):
    c = LoopbackCluster(tmp_path)
    yield c
    c.close()
    c.check_no_errors()


def dedup(xs):
    seen, out = set(), []
    for x in xs:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def assert_same_applied(c, members):
    """Same applied sequence on each member (a re-proposed value may appear twice, at
    the same positions everywhere)."""
    seqs = {m: tuple(c.applied[m]) for m in members}
    shortest = min(len(s) for s in seqs.values())
    prefixes = {s[:shortest] for s in seqs.values()}
    assert len(prefixes) == 1, seqs


def test_replication_over_tcp(cluster):
    c = cluster
    c.wait_leader()
    for k in range(20):
        c.propose_until_applied(b"w%d" % k, c.ids, via=random.Random(k).choice(c.ids))
    assert_same_applied(c, c.ids)
    assert dedup(c.applied[1]) == [b"w%d" % k for k in range(20)]


def test_leader_isolated_then_healed(cluster):
    c = cluster
    old = c.wait_leader()
    c.propose_until_applied(b"before", c.ids)
    c.isolate(old)
    rest = [i for i in c.ids if i != old]
    new = c.wait_leader(rest)
    assert new != old
    c.propose_until_applied(b"during", rest)
    # check-quorum: the isolated leader steps down by itself.
    wait_for(lambda: old not in c.leaders([old]), 10, "old leader to step down")
    assert b"during" not in c.applied[old]
    c.isolate(old, on=False)
    c.propose_until_applied(b"after", c.ids)
    assert_same_applied(c, c.ids)


def test_asymmetric_partition_leader_cannot_send(cluster):
    c = cluster
    old = c.wait_leader()
    for j in c.ids:
        if j != old:
            c.cut(old, j)  # the leader's messages are lost; it still hears everyone
    rest = [i for i in c.ids if i != old]
    new = c.wait_leader(rest)
    assert new != old
    c.propose_until_applied(b"one-way", rest)
    for j in c.ids:
        if j != old:
            c.cut(old, j, on=False)
    c.propose_until_applied(b"healed", c.ids)
    assert_same_applied(c, c.ids)


def test_corrupting_link_is_survived(cluster):
    c = cluster
    lead = c.wait_leader()
    follower = [i for i in c.ids if i != lead][0]
    c.proxies[(lead, follower)].corrupt_every = 2
    for k in range(5):
        c.propose_until_applied(b"c%d" % k, [i for i in c.ids if i != follower])
    wait_for(lambda: c.transports[follower].stats.bad_frames > 0, 10, "a rejected frame")
    c.proxies[(lead, follower)].corrupt_every = 0
    c.propose_until_applied(b"clean", c.ids)
    assert_same_applied(c, c.ids)


def test_read_index_and_leader_transfer_through_driver(cluster):
    c = cluster
    lead = c.wait_leader()
    c.propose_until_applied(b"x", c.ids)
    follower = [i for i in c.ids if i != lead][0]
    got = []
    done = threading.Event()

    def on_read(index):
        got.append((index, c.drivers[follower].applied))
        done.set()

    for _ in range(50):
        c.drivers[follower].read_index(b"read-%d" % len(got), on_read)
        if done.wait(0.2):
            break
    assert got and got[0][1] >= got[0][0] >= 4  # bootstrap 3 + empty entry + "x"
    c.drivers[lead].transfer_leader(follower)
    wait_for(lambda: c.leaders() and c.leaders()[0] == follower, 10, "transfer")


def test_member_added_and_removed_over_tcp(cluster):
    """A fourth member joins empty (its address travels in the conf change), catches
    up from the log, is promoted and takes part in quorums; then a founder leaves."""
    c = cluster
    c.wait_leader()
    c.propose_until_applied(b"before", [1, 2, 3])
    addr = c.start_member(4)
    lead = c.wait_leader([1, 2, 3])
    c.drivers[lead].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4, addr))
    c.propose_until_applied(b"learner", [1, 2, 3, 4])
    assert b"before" in c.applied[4]
    st4 = c.drivers[4].status()
    assert st4.conf_state == ConfState([1, 2, 3], [4])
    lead = c.wait_leader([1, 2, 3])
    c.drivers[lead].propose_conf_change(ConfChange(ConfChangeType.ADD_NODE, 4, addr))
    wait_for(lambda: c.drivers[4].status().conf_state == ConfState([1, 2, 3, 4]), 10,
             "promotion")
    gone = [i for i in (1, 2, 3) if i != c.wait_leader()][0]
    lead = c.wait_leader()
    c.drivers[lead].propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, gone))
    rest = [i for i in (1, 2, 3, 4) if i != gone]
    wait_for(lambda: all(c.drivers[i].status().conf_state.voters == tuple(sorted(rest))
                         for i in rest), 10, "removal")
    c.drivers[gone].stop()  # even with it gone for good, the remaining three make progress
    c.propose_until_applied(b"without-%d" % gone, rest)
    assert_same_applied(c, rest)


def test_lagging_member_catches_up_by_snapshot_over_tcp(tmp_path):
    """Members snapshot and compact every 20 entries; a member cut off meanwhile gets
    the leader's snapshot over the wire, installs it, then follows the log."""
    import json
    state = {}

    def opts(i):
        state[i] = []
        return dict(snapshot_every=20, snapshot_keep=5,
                    snapshot_data=lambda: json.dumps(state[i]).encode(),
                    on_snapshot=lambda snap: state.__setitem__(i, json.loads(snap.data)))

    c = LoopbackCluster(tmp_path, make_apply=lambda i: lambda e: state[i].append(e.data.decode()),
                        driver_opts=opts)
    try:
        lead = c.wait_leader()
        lag = [i for i in c.ids if i != lead][0]
        c.isolate(lag)
        rest = [i for i in c.ids if i != lag]
        for k in range(60):
            c.drivers[c.wait_leader(rest)].propose(b"e%d" % k)
        wait_for(lambda: all(len(state[i]) >= 60 for i in rest), 20, "60 entries applied")
        # The driver snapshots right after applying, on its own thread: wait for it.
        wait_for(lambda: all(c.drivers[i].snapshots_taken >= 1 and
                             c.storage[i].first_index() > 10 for i in rest), 10,
                 "snapshots and compaction past the lagging member's log")
        c.isolate(lag, on=False)
        c.drivers[c.wait_leader()].propose(b"after")
        wait_for(lambda: state[lag][-1:] == ["after"], 20, "the lagging member to catch up")
        assert c.drivers[lag].snapshots_installed >= 1
        want = state[rest[0]]
        assert state[lag] == want[:len(state[lag])] and "e59" in state[lag]
    finally:
        c.close()
    c.check_no_errors()


def test_only_a_snapshot_frame_may_exceed_the_message_limit():
    """A length past MAX_MESSAGE is accepted only when the payload starts as a MsgSnap
    (snapshots travel as one frame); any other such length is corruption."""
    from kvtrees.raft.codec import MAX_FRAME, MAX_MESSAGE, check_big_frame
    from kvtrees.raft.types import MsgType
    check_big_frame(MAX_MESSAGE, bytes([int(MsgType.APP)]))         # at the limit: fine
    check_big_frame(MAX_MESSAGE + 1, bytes([int(MsgType.SNAP)]))
    with pytest.raises(WireError):
        check_big_frame(MAX_MESSAGE + 1, bytes([int(MsgType.APP)]))
    with pytest.raises(WireError):
        parse_frame_header((MAX_FRAME + 1).to_bytes(4, "big") + b"\0\0\0\0")
