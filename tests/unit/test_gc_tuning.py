"""Consumers space out garbage collections once per process, keeping cycle collection on."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc
from shared.runtime import GC_YOUNG_THRESHOLD, tune_gc_for_batches
before = gc.get_threshold()
tune_gc_for_batches()
tune_gc_for_batches()  # idempotent: the second call changes nothing
after = gc.get_threshold()
assert gc.isenabled()
assert after == (GC_YOUNG_THRESHOLD, before[1], before[2]), (before, after)
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()

class Node:
    pass

# A cycle is still collected once enough containers have been allocated.
import weakref
a, b = Node(), Node()
a.other, b.other = b, a
probe = weakref.ref(a)
del a, b
keep = [[] for _ in range(GC_YOUNG_THRESHOLD * 2)]
assert probe() is None, "cycle garbage was never collected"
print("ok")
"""


def test_tune_gc_for_batches_in_a_fresh_process() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
