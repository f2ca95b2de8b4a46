"""How big each Spark executor is when ``[spark] executor_cores`` / ``executor_memory`` are
left unset: the CPUs and memory free for the run, shared among the sessions it starts.

A fixed single core leaves most of a bigger machine or node idle through every MERGE; a
fixed larger number oversubscribes a cluster that runs many sessions, and on a small
machine starves the Spark driver (measured on 2 cores: two executor cores beside the
driver made every whole run slower than one, README "Performance"). Memory follows the
cores (each task slot gets its own share of the heap), within what one node has.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Cores an automatically sized executor gets at most. A MERGE of a few partitions has
#: tens of tasks per stage (one per bucket and partition); past this, cores wait on them.
MAX_AUTO_EXECUTOR_CORES = 8
#: Executor heap per core when the memory is sized automatically (the fixed default was 1g
#: for one core), and the least an executor gets whatever is free.
MIB_PER_CORE = 1024
MIN_EXECUTOR_MIB = 512


_UNITS = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}


def memory_mib(text: str) -> int:
    """A JVM/Spark memory string ("768m", "2g", "1t", "4096k") in MiB; ValueError otherwise."""
    value = text.strip().lower().removesuffix("b")
    if len(value) < 2 or value[-1] not in _UNITS or not value[:-1].isdigit():
        raise ValueError(f"{text!r} is not a memory size such as '768m' or '2g'")
    return int(int(value[:-1]) * _UNITS[value[-1]])


@dataclass(frozen=True)
class SessionBudget:
    """The CPUs a run may give its Spark sessions, the memory of its largest node, and where
    the figures came from.

    ``reserved_per_session``: CPUs each session needs beside its executors: on a cluster
    its partition actor (the Spark driver) and a spare; on one machine, a core for the
    Spark driver.
    """

    free: float
    largest_node: float
    reserved_per_session: float
    node_memory_mib: float
    source: str

    def executor_cores(self, sessions: int, num_executors: int) -> int:
        """Cores per executor: the free CPUs split evenly over ``sessions`` sessions of
        ``num_executors`` executors each, at least one, at most one node's CPUs (an
        executor lives on one node) and :data:`MAX_AUTO_EXECUTOR_CORES`."""
        per_session = self.free / max(1, sessions) - self.reserved_per_session
        per_executor = int(per_session // max(1, num_executors))
        return max(1, min(per_executor, int(self.largest_node), MAX_AUTO_EXECUTOR_CORES))

    def executor_memory(self, cores: int) -> str:
        """Heap per executor, as Spark writes it: :data:`MIB_PER_CORE` per core, at most a
        quarter of the largest node's memory, at least :data:`MIN_EXECUTOR_MIB`. It depends
        on the cores and the node alone, not on what happens to be free, so the same run
        asks for the same session shape again and finds the one it kept warm."""
        return f"{max(MIN_EXECUTOR_MIB, int(min(cores * MIB_PER_CORE, self.node_memory_mib / 4)))}m"

    def describe(self, sessions: int, num_executors: int) -> str:
        """The choice as the run's lines say it."""
        cores = self.executor_cores(sessions, num_executors)
        return f"sized from {self.source} over {sessions} session(s): {cores} core(s) per executor"
