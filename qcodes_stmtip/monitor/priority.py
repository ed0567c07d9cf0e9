"""Lower the OS scheduling priority of the inference threads, so acquisition wins the CPU.

The monitor's worker thread and TensorFlow's own thread pools (threads named ``tf_*``,
e.g. ``tf_Compute``) run at a higher nice value than the acquisition thread. When both
want the CPU — a 2-core acquisition PC, or the simulator rendering on the same machine —
the kernel gives it to acquisition; when the CPU is idle, inference runs at full speed.
The effect on acquisition and latency is measured by ``benchmarks/monitor.py``
(``benchmarks/RESULTS.md``).

Linux only (per-thread nice via ``/proc/self/task``); elsewhere nothing is changed and the
functions say so. Raising a priority back needs privileges, so TensorFlow's threads keep
the lower priority for the rest of the process (other TensorFlow work in the same process
then also yields to acquisition).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["TASKS", "lower_priority", "supported", "tensorflow_thread_ids", "thread_ids"]

log = logging.getLogger(__name__)

#: Where Linux lists the threads of this process.
TASKS = Path("/proc/self/task")
#: Highest nice value (lowest priority) on Linux.
MAX_NICE = 19


def supported() -> bool:
    """True where per-thread priorities can be set (Linux)."""
    return TASKS.is_dir() and hasattr(os, "setpriority")


def thread_ids() -> set[int]:
    """Native ids of this process's threads (empty where unsupported)."""
    if not supported():
        return set()
    return {int(t) for t in os.listdir(TASKS) if t.isdigit()}


def tensorflow_thread_ids() -> set[int]:
    """Native ids of the threads TensorFlow named ``tf_*`` (its compute and runner pools)."""
    out = set()
    for tid in thread_ids():
        try:
            name = (TASKS / str(tid) / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        if name.startswith("tf_"):
            out.add(tid)
    return out


def lower_priority(tids: Iterable[int], increment: int, *, keep: Iterable[int] = ()) -> list[int]:
    """Raise the nice value of threads ``tids`` (not those in ``keep``) to this process's nice
    plus ``increment`` (capped at 19; never lowered). Returns the ids actually changed."""
    if not 0 <= increment <= MAX_NICE:
        raise ValueError(f"increment must be in 0…{MAX_NICE}, got {increment}")
    if not supported() or increment == 0:
        return []
    target = min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, 0) + increment)
    changed = []
    for tid in set(tids) - set(keep):
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < target:
                os.setpriority(os.PRIO_PROCESS, tid, target)
                changed.append(tid)
        except OSError as exc:  # ended meanwhile, or not allowed: inference still works
            log.debug("could not lower the priority of thread %d: %s", tid, exc)
    return sorted(changed)
