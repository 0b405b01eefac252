"""The forwards added to a held lab (``added_ports.py``), kept equal to what its record asks, on the very
connection that carries the lab's own forward: opened when asked, closed when no longer asked, and gone
with that connection -- the hold opens them again on the next one, so they heal when the lab does.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ..added_ports import Added, State, Target
from ..errors import LabError
from .forward import Forward

_log = logging.getLogger(__name__)

Opener = Callable[[str, int], AbstractContextManager[Forward]]  # (far end, local port) -> a running forward


@dataclass(frozen=True)
class AddedSource:
    """Where a hold learns which forwards its lab asks for, and tells how each fares."""

    wanted: Callable[[], tuple[Added, ...]]
    report: Callable[[str, State, str], None]  # (target, state, note)


@dataclass(frozen=True)
class Sides:
    """How to open a forward on each side of the lab, and where a node-side target is reached from."""

    node: Opener
    login: Opener
    node_addr: str
    through_node: bool


class AddedForwards:
    """The added forwards of one held lab on one connection; :meth:`sync` once per tick of the hold."""

    def __init__(self, source: AddedSource, sides: Sides | None, log: Callable[[str], None] = _log.info):
        self.source, self.sides, self.log = source, sides, log
        self.open: dict[tuple[str, int], contextlib.ExitStack] = {}
        self.failed: set[tuple[str, int]] = set()  # tried on this connection: not again until the next one

    def sync(self) -> None:
        try:
            wanted = {(a.to, a.port): a for a in self.source.wanted()}
        except LabError:
            return  # the record is being replaced or is gone: the hold hears of that itself
        for key in [k for k in self.open if k not in wanted]:
            self.open.pop(key).close()
            self.log(f"forward 127.0.0.1:{key[1]} to {key[0]} ended")
        self.failed &= set(wanted)
        for key, added in wanted.items():
            if key not in self.open and key not in self.failed:
                self._open(added)
            elif key in self.open and added.state != "up":  # asked again while it runs: it is up
                self.source.report(added.to, "up", "")

    def _open(self, added: Added) -> None:
        key = (added.to, added.port)
        stack = contextlib.ExitStack()
        try:
            target = Target.parse(added.to)
            if self.sides is None:
                raise LabError("this connection cannot carry more forwards")
            far = target.far(self.sides.node_addr, self.sides.through_node)
            opener = self.sides.login if target.side == "login" else self.sides.node
            fwd = stack.enter_context(opener(far, added.port))
        except LabError as exc:
            stack.close()
            self.failed.add(key)
            self.source.report(added.to, "failed", str(exc))
            self.log(f"forward to {added.to} failed: {exc}")
            return
        self.open[key] = stack
        self.source.report(added.to, "up", "")
        self.log(f"forwarding 127.0.0.1:{fwd.port} to {added.to} ({far})")

    def close(self) -> None:
        for stack in self.open.values():
            stack.close()
        self.open.clear()

    def __enter__(self) -> AddedForwards:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
