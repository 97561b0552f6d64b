"""Writer process for the kill -9 crash tests (tests/test_engine_crash.py).

usage: crash_writer.py PATH ENGINE SEED [OPTIONS_JSON]

Opens PATH, finds the last batch id written so far (key b"last"), then commits batches
id = last+1, last+2, ... forever with sync="commit". Batch i puts KEYS_PER_BATCH keys
b"b%08d/%02d" tagged with i plus b"last" = i, and deletes the tagged keys of batch
i - DELETE_LAG when i % 5 == 0 (so the deleted keys must be gone all together, too). After
each commit returns it prints the id on its own line and flushes: a printed id is an
acknowledged, durable batch. Prints "ready <first id>" before the first batch.
The parent kills it with SIGKILL at a random moment.
"""

import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kvtrees  # noqa: E402
from batches import commit_batch  # noqa: E402


def main() -> None:
    path, engine, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    opts = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    opts["sync"] = "commit"
    rng = random.Random(seed)
    eng = kvtrees.open_engine(path, engine=engine, **opts)
    last = eng.get(b"last")
    i = int(last) + 1 if last is not None else 1
    print("ready", i, flush=True)
    out = sys.stdout
    while True:
        commit_batch(eng, i, rng)
        out.write("%d\n" % i)
        out.flush()
        i += 1
        if rng.random() < 0.02:
            eng.checkpoint()          # explicit checkpoints too, besides the wal_limit ones


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        os._exit(0)
