"""WatchHub on its own (no engine): in-order delivery from out-of-order writers, and no
backlog kept for revisions nobody will be handed."""

from kvtrees.mvcc import Entry
from kvtrees.watch_hub import WatchHub

UNKNOWN = object()


def _hub(visible):
    return WatchHub(lambda: visible[0], lambda w, a, b: [], lambda k, r: None, 1, 100,
                    UNKNOWN)


def _change(rev):
    return [(Entry(b"k", rev, False, rev, 1, 0, b"v%d" % rev), None)]


def test_out_of_order_hand_over_is_delivered_in_order():
    visible = [1]
    hub = _hub(visible)
    w = hub.add(b"k", None, None, False, (), 0)
    visible[0] = 4                        # revisions 2..4 visible, handed over 3, 4, 2
    hub.hand_over(3, lambda: _change(3))
    hub.hand_over(4, lambda: _change(4))
    assert hub.backlog() == 2             # 2 is missing: nothing delivered yet
    hub.hand_over(2, lambda: _change(2))
    assert hub.backlog() == 0
    assert [w.get(1).mod_revision for _ in range(3)] == [2, 3, 4]
    hub.close()


def test_revisions_before_a_joining_watcher_are_not_kept():
    visible = [10]
    hub = _hub(visible)
    hub.add(b"k", None, None, False, (), 0)   # starts after revision 10 (replays older)
    hub.hand_over(7, lambda: _change(7))      # a writer late with an older revision
    assert hub.backlog() == 0
    hub.close()


def test_nothing_kept_without_watchers():
    visible = [5]
    hub = _hub(visible)
    hub.hand_over(5, lambda: _change(5))
    hub.record(6, _change(6))                 # a Python-path write, not yet visible
    visible[0] = 6
    hub.publish()
    assert hub.backlog() == 0
    hub.close()
