"""``sessions``: the warm Spark sessions a cluster keeps for the next run, and ending them.

Warm sessions (``--keep-warm``) are partition actors that outlive their run; each ends
itself once idle for its keep-warm time. This lists them and ends the idle ones at once
(``--stop``), e.g. before a cluster is scaled down; one a run still holds is left to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors import runtime
from actors.named import end_idle
from actors.warm import WarmSession, list_sessions
from backfill.config import Config


@dataclass(frozen=True)
class SessionsResult:
    """The warm sessions found (before any was ended) and what ``--stop`` did."""

    address: str | None
    sessions: tuple[WarmSession, ...] = ()
    ended: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        if self.address is None:
            return ["no Ray cluster given (--ray-address or RAY_ADDRESS): warm sessions live in a cluster, "
                    "or in the process whose runs started them, and end with it"]
        out = [f"{len(self.sessions)} warm session(s) on {self.address}"]
        for s in self.sessions:
            state = f"held by {s.holder}" if s.holder else f"idle {s.idle_seconds:.0f} s of {s.keep_warm_seconds:.0f} s"
            ended = ", ended" if s.name in self.ended else ""
            out.append(f"  {s.name}  pid {s.pid} on {s.node}: {state}{ended}")
        if self.ended:
            out.append(f"ended {len(self.ended)} idle session(s)")
        return out


def warm_sessions(cfg: Config, stop: bool = False) -> SessionsResult:
    """The warm sessions of the cluster ``cfg`` names; with ``stop``, the idle ones ended."""
    address = runtime.cluster_address(cfg)
    if address is None:
        return SessionsResult(None)
    runtime.ensure_ray(cfg)
    namespace = cfg.run.checkpoint_namespace
    found = tuple(list_sessions(namespace))
    ended = tuple(end_idle(namespace)) if stop else ()
    return SessionsResult(address, found, ended)
