"""Forwards added to a running lab (``fabfile-lab forward``): a Dask dashboard, TensorBoard or any web
app started from the notebook after the lab's own forward was opened.

A request is data in the lab's record -- what to reach and the local port -- and the watcher, which
holds the lab, adds each one to the connection that already carries the lab (``ssh -O forward`` on the
kept login or on the node link), heals them with it and ends them with it. This module says what a
request means: what it reaches, along which side of the lab, and who else can reach the same thing.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Literal

from .errors import LabError

Side = Literal["node", "login"]
State = Literal["asked", "up", "failed"]

_PORT = re.compile(r"[0-9]{1,5}")
_SOCKET = re.compile(r"/[A-Za-z0-9._/@%+=:,-]{1,200}")


@dataclass(frozen=True)
class Target:
    """What an added forward reaches: a TCP port on the lab's node (``8787``) or on its login node
    (``login:6006``), or a Unix socket on the node (``/path/to.sock``)."""

    side: Side
    port: int = 0
    socket: str = ""

    @classmethod
    def parse(cls, text: str) -> Target:
        """``PORT``, ``login:PORT`` or an absolute socket path; a one-line LabError otherwise."""
        word = str(text).strip()
        side: Side = "node"
        if word.startswith("login:"):
            side, word = "login", word.removeprefix("login:")
        if side == "node" and word.startswith("/"):
            if not _SOCKET.fullmatch(word) or "/../" in f"{word}/":
                raise LabError(f"forward {text!r}: a socket path on the node is absolute, of letters, digits "
                               "and ._/@%+=:,- only.")
            return cls("node", socket=word)
        if not _PORT.fullmatch(word) or not 1 <= int(word) <= 65535:
            raise LabError(f"forward {text!r}: give a port on the node (8787), on the login node (login:8787), "
                           "or a socket path on the node (/tmp/app.sock).")
        return cls(side, port=int(word))

    def __str__(self) -> str:
        if self.socket:
            return self.socket
        return f"login:{self.port}" if self.side == "login" else str(self.port)

    def far(self, node_addr: str, through_node: bool) -> str:
        """What the far end of the ``-L`` connects to: on the node's side, its loopback where the forward
        runs on the node itself (compute mode), else its address as the login node reaches it."""
        if self.side == "login":
            return f"127.0.0.1:{self.port}"
        if through_node:
            return self.socket or f"127.0.0.1:{self.port}"
        if self.socket:
            raise LabError(f"a socket on the node ({self.socket}) is reached through the node itself: the lab "
                           "runs in a mode whose forwards end on the login node (use lab.via: compute).")
        host = f"[{node_addr}]" if ":" in node_addr else node_addr
        return f"{host}:{self.port}"

    def shared_with(self, node: str, login: str) -> str:
        """Who else can connect to what this reaches ("" for a socket: only its owner, if it is 0600)."""
        if self.socket:
            return ""
        return f"other users of {login or 'the login node'}" if self.side == "login" else \
            f"other users of {node or 'the node'}"


@dataclass(frozen=True)
class Added:
    """One added forward, as the record keeps it: the target, its local port, and how it fares."""

    to: str  # str(Target)
    port: int  # the local port (127.0.0.1 and ::1)
    state: State = "asked"
    note: str = ""  # why it failed, or what the watcher last said of it

    @property
    def target(self) -> Target:
        return Target.parse(self.to)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def said(self, state: State, note: str = "") -> Added:
        return replace(self, state=state, note=note)


def from_record(entries: object) -> tuple[Added, ...]:
    """The added forwards a record lists; entries that are not whole are left out (a record is ours, but
    an older version of the tool may have written it)."""
    found = []
    for entry in entries if isinstance(entries, list | tuple) else ():
        try:
            added = Added(str(entry["to"]), int(entry["port"]), entry.get("state", "asked"), str(entry.get("note", "")))
            Target.parse(added.to)
        except (KeyError, TypeError, ValueError, LabError):
            continue
        found.append(added)
    return tuple(found)


def to_record(added: tuple[Added, ...]) -> list[dict]:
    return [asdict(a) for a in added]


def find(added: tuple[Added, ...], which: str) -> Added | None:
    """The forward ``which`` names: its target as given (``8787``, ``login:6006``) or its local port."""
    for entry in added:
        if which in (entry.to, str(entry.port)):
            return entry
    return None


def with_state(added: tuple[Added, ...], to: str, state: State, note: str = "") -> tuple[Added, ...]:
    return tuple(a.said(state, note) if a.to == to else a for a in added)
