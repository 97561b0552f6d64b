"""Writer process for tests/test_engine_paged_log.py.

usage: paged_writer.py PATH ENGINE SEED OPTIONS_JSON EXIT

Runs paged_ops(SEED) against PATH opened with sync="none", printing the index of each
op once it returned (an acknowledged op), then leaves without closing (EXIT "exit":
os._exit, so no checkpoint runs and recovery must replay the log) or waits to be
killed (EXIT "wait"). Under sync "none" an acknowledged op must survive the process.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kvtrees  # noqa: E402
from paged_ops import paged_ops, apply_op  # noqa: E402


def main() -> None:
    path, engine, seed, opts, how = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        json.loads(sys.argv[4]), sys.argv[5]
    eng = kvtrees.open_engine(path, engine=engine, sync="none", **opts)
    out = sys.stdout
    for i, op in enumerate(paged_ops(seed)):
        apply_op(eng, op)
        out.write("%d\n" % i)
        out.flush()
    out.write("done\n")
    out.flush()
    if how == "wait":
        time.sleep(60)
    os._exit(0)


if __name__ == "__main__":
    main()
