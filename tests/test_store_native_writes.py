"""Native writes (kvt_mvcc_put) running in parallel with everything else: watches that
join mid-stream see every later revision once and in order, and what a reader observed
before its process was killed survives the crash. Both engines; each ends with check()."""

import os
import signal
import subprocess
import sys
import threading
import time

import kvtrees

OBSERVER = r"""
import sys, threading, kvtrees
db = kvtrees.open(%(path)r, engine=%(engine)r, sync="commit")
def write(t):
    i = 0
    while True:
        db.put("w%%d/%%d" %% (t, i %% 50), "%%d:%%d" %% (t, i))
        i += 1
for t in range(8):
    threading.Thread(target=write, args=(t,), daemon=True).start()
seen = 0
while True:                      # the reader: every revision it sees, with one value
    rev = db.revision
    if rev > seen:
        kvs = db.range(b"w", b"x", revision=rev).kvs
        if kvs:                  # (nothing written yet at the first revision)
            newest = max(kvs, key=lambda kv: kv.mod_revision)
            print(rev, newest.key.decode(), newest.value.decode(), newest.mod_revision,
                  flush=True)
        seen = rev
"""


def test_observed_revisions_survive_sigkill(engine_name, tmp_path):
    """A reader in the writer's process prints every revision it sees (and the newest
    write at it); the process is killed with SIGKILL; after reopening, each printed
    revision is there with the same newest write: nothing a reader saw was lost."""
    path = str(tmp_path / "db")
    observed = []
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c",
                                 OBSERVER % {"path": path, "engine": engine_name}],
                                stdout=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            lines = []
            while len(lines) < 30 + 20 * round_ and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc.stdout.close()
        assert len(lines) >= 30, "the observer printed too little"
        observed += [line.split() for line in lines]
    with kvtrees.open(path, engine=engine_name) as db:
        assert db.revision >= max(int(o[0]) for o in observed)
        for rev, key, value, mod in observed:
            kv = db.get(key, revision=int(rev))[1]
            assert kv is not None and kv.value.decode() == value
            assert kv.mod_revision == int(mod)
        db.check()


def test_watch_joining_mid_stream_sees_every_later_revision(engine_name, tmp_path):
    """8 writer threads put without pause while watches keep joining: each watch sees
    consecutive revisions from where it started up to the last write, none twice."""
    db = kvtrees.open(str(tmp_path / "db"), engine=engine_name, sync="none")
    done = []

    def write(t):
        for i in range(300):
            db.put("w/%d/%d" % (t, i % 20), "x")
        done.append(t)

    writers = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for t in writers:
        t.start()
    watches = []                  # (first revision it must report or None, watch)
    while len(done) < 8 and len(watches) < 40:
        if len(watches) % 2:      # from the current revision: live events only
            watches.append((None, db.watch_prefix("w/")))
        else:                     # from a given revision: replay, then live
            first = db.revision + 1
            watches.append((first, db.watch_prefix("w/", start_revision=first)))
        time.sleep(0.002)
    for t in writers:
        t.join(60)
    final = db.revision
    try:
        checked = 0
        for first, (events, cancel) in watches:
            revs = []
            try:
                while not revs or revs[-1] < final:
                    revs.append(events.get(5).mod_revision)
            except TimeoutError:
                assert first is None and not revs   # joined after the last write
                continue
            assert revs == list(range(first or revs[0], final + 1))
            checked += 1
        assert checked >= len(watches) // 2
    finally:
        for _, (_, cancel) in watches:
            cancel()
    db.check()
    db.close()


def test_observed_revisions_survive_power_loss(engine_name, tmp_path):
    """In-process power loss (the fault VFS drops every unsynced write) while 4 threads
    put: every revision a reader saw before the crash is there after reopening, with
    the same values. The crash comes while the writers' fsyncs are held open, so the
    log holds committed but unsynced revisions that no reader may have seen. (SIGKILL
    alone cannot show a premature read: the OS keeps the unsynced log.)"""
    path = str(tmp_path / "db")
    fv = kvtrees.FaultVFS()
    db = kvtrees.open(path, engine=engine_name, sync="commit", _vfs=fv)
    crashed = threading.Event()
    observed = []

    def write(t):
        i = 0
        while not crashed.is_set():
            try:
                db.put("w%d" % t, "%d" % i)       # one key per writer: short reads
            except kvtrees.KvtreesError:
                return
            i += 1

    def read():
        seen = 0
        while not crashed.is_set():
            try:
                rev = db.revision
                if rev > seen:
                    kvs = db.range(b"w", b"x", revision=rev).kvs
                    observed.append((rev, [(kv.key, kv.value) for kv in kvs]))
                    seen = rev
            except kvtrees.KvtreesError:
                return
    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        held = fv.held_syncs()
        fv.hold_syncs()                       # writers now wait in fsync
        for _ in range(500):
            if fv.held_syncs() > held:
                break
            time.sleep(0.01)
        time.sleep(0.1)                       # the reader looks meanwhile
        fv.crash(kvtrees.FaultVFS.CRASH_DROP)
    finally:
        crashed.set()
        fv.hold_syncs(False)
        for t in threads:
            t.join(30)
    try:
        db.close()
    except kvtrees.KvtreesError:
        pass
    fv.close()
    assert len(observed) >= 5, "the reader observed too little"
    with kvtrees.open(path, engine=engine_name) as db:
        assert db.revision >= observed[-1][0]
        for rev, kvs in observed:
            got = [(kv.key, kv.value) for kv in db.range(b"w", b"x", revision=rev).kvs]
            assert got == kvs
        db.check()
