"""Instructions per store or raw-engine operation, counted by valgrind's callgrind: the
same loop run with 0 and with N operations, the difference divided by N (so set-up and
interpreter start-up cancel out). Deterministic for the same build and inputs, whatever
else the machine does.

    python bench/op_instructions.py --op get --target store --ops 12000
    python bench/op_instructions.py --op txn --target engine   # get + compare + put

3,000 loaded keys of the Kubernetes shape, 100 B values, sync="none", btree unless
--engine says otherwise. --child runs the loop itself (what valgrind runs).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

VALUE = b"v" * 100
KEYS = [b"/registry/pods/ns%02d/pod-%07d" % (i % 50, i) for i in range(3000)]


def loop(op: str, target: str, engine: str, n: int) -> None:
    import kvtrees
    d = tempfile.mkdtemp(prefix="kvt-opi-")
    db = (kvtrees.open(d, engine=engine, sync="none") if target == "store"
          else kvtrees.open_engine(d, engine=engine, sync="none"))
    for k in KEYS:
        db.put(k, VALUE)
    if op == "get":
        fn = db.get
    elif op == "put":
        def fn(k):
            db.put(k, VALUE)
    elif target == "store":
        t = db.transactions

        def fn(k):
            db.transaction([t.value(k) == VALUE], [t.put(k, VALUE)], [])
    else:
        def fn(k):
            if db.get(k) == VALUE:
                db.put(k, VALUE)
    for i in range(n):
        fn(KEYS[i % len(KEYS)])
    db.close()


def instructions(args, n: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           os.path.realpath(sys.executable), os.path.abspath(__file__), "--child",
           "--op", args.op, "--target", args.target, "--engine", args.engine,
           "--ops", str(n)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--op", choices=("get", "put", "txn"), required=True)
    ap.add_argument("--target", choices=("store", "engine"), default="store")
    ap.add_argument("--engine", default="btree")
    ap.add_argument("--ops", type=int, default=6000)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        loop(a.op, a.target, a.engine, a.ops)
        return 0
    per_op = (instructions(a, a.ops) - instructions(a, 0)) / a.ops
    print("%s %s %s: %.0f instructions per op" % (a.target, a.engine, a.op, per_op))
    return 0


if __name__ == "__main__":
    sys.exit(main())
