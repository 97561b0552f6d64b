"""Run a function in N threads and surface what any of them raised."""

import threading


def run_threads(fn, n: int) -> None:
    """fn(t) for t in range(n), each in its own thread; re-raises the first error."""
    errors = []

    def guarded(t: int) -> None:
        try:
            fn(t)
        except BaseException as e:          # reported below, in the caller's thread
            errors.append(e)
    ths = [threading.Thread(target=guarded, args=(t,)) for t in range(n)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    if errors:
        raise errors[0]
