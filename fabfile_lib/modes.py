"""The ways of reaching Jupyter (``lab.via``): one value of :class:`Via` and one :class:`Mode` each.

A mode says three things, and nothing else in the project branches on ``via``:

- where Jupyter binds on the node, and what else the job must run (shell lines for the batch script);
- the far end of the laptop's forward: the compute node itself (an ssh to the node through the login
  node) or the login node (a forward on the kept login);
- which host and port that far end forwards to, once Jupyter has written its runtime file.

Adding a mode is adding a member to ``Via`` and a ``Mode`` to ``MODES``. This module imports only the
project's errors and checks, so settings can validate ``lab.via`` against it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from . import untrusted
from .errors import LabError, ModeUnreachable


class Via(str, Enum):
    COMPUTE = "compute"
    LOGIN = "login"
    REVERSE = "reverse"


Read = Callable[[str], "str | None"]  # a file of the lab's directory by name; None while it does not exist
Endpoint = tuple[str, int]

_BIND_LOCAL = "BIND=127.0.0.1"
_BIND_NODE_ADDRESS = r"""BIND=$(scontrol show node "${SLURMD_NODENAME:-$(hostname)}" -o 2>/dev/null \
       | sed -n 's/.*NodeAddr=\([^ ]*\).*/\1/p')
[ -n "$BIND" ] || BIND=$(hostname -I | cut -d' ' -f1)"""
_REVERSE_HOP = r"""PORT=
for _ in $(seq 600); do
    kill -0 $JUPYTER_PID 2>/dev/null || break
    PORT=$(sed -n 's/^ *"port": *\([0-9]*\).*/\1/p' "$JUPYTER_RUNTIME_DIR"/jpserver-$JUPYTER_PID.json \
           2>/dev/null)
    [ -n "$PORT" ] && break
    sleep 0.2
done
if [ -n "$PORT" ]; then
    # Remote port 0: the login node's sshd picks a free port and ssh reports it in reverse.log.
    # The marker line tells the tool at once when the reverse hop cannot work on this site; a hop that
    # dies later (the login node's sshd restarted, a network blip) is made again while Jupyter runs.
    ( delay=5
      while kill -0 $JUPYTER_PID 2>/dev/null; do
          ssh -N -o BatchMode=yes -o ExitOnForwardFailure=yes -o ServerAliveInterval=30 \
              -R "127.0.0.1:0:127.0.0.1:$PORT" "$LAB_REVERSE_TARGET" 2>>"$LAB_DIR/reverse.log"
          echo "fabfile-lab: reverse ssh exited with status $?" >>"$LAB_DIR/reverse.log"
          sleep $delay
          [ $delay -lt 60 ] && delay=$((delay * 2))
      done ) &
    REVERSE_PID=$!
fi"""
REVERSE_LOG = "reverse.log"
_ALLOCATED = re.compile(r"Allocated port (\d{1,5}) for remote forward")
_EXITED = "fabfile-lab: reverse ssh exited"


def _on_node(runtime: dict, node_addr: str, read: Read) -> Endpoint | None:
    return "127.0.0.1", int(runtime["port"])


def _node_address(runtime: dict, node_addr: str, read: Read) -> Endpoint | None:
    listed = runtime.get("hostname")
    return listed if untrusted.host(listed) else node_addr, int(runtime["port"])


def reverse_port(text: str) -> int:
    """The login-side port of the job's ``ssh -R`` from its log (the newest one: the job makes the hop
    again when it dies); 0 while it is not up (yet, or again)."""
    allocated = list(_ALLOCATED.finditer(text))
    if allocated:
        last = allocated[-1]
        return 0 if _EXITED in text[last.end():] else int(last.group(1))
    if _EXITED in text:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        raise ModeUnreachable(f"the job's reverse ssh to the login node failed ({first.strip()}); "
                       f"set lab.via to {others(Via.REVERSE)}, or fix lab.reverse_target and the node's ssh key.")
    return 0


def _reverse(runtime: dict, node_addr: str, read: Read) -> Endpoint | None:
    port = reverse_port(read(REVERSE_LOG) or "")
    return ("127.0.0.1", port) if port else None


@dataclass(frozen=True)
class Mode:
    via: Via
    far_end: Literal["node", "login"]  # where the laptop's forward comes out
    loopback: bool  # Jupyter listens on the node's 127.0.0.1 (else on the node's address: token only)
    after_start: str  # batch-script lines run once Jupyter started (JUPYTER_PID is set); "" for none
    endpoint: Callable[[dict, str, Read], Endpoint | None]  # (runtime file, NodeAddr, read) -> host, port
    pinned: bool = False  # its far end lives on the one login node the job was submitted from (and moves
    # when the job makes its hop there again: read it anew before each forward)

    def pin(self, login_host: str) -> str:
        """The login node a lab of this mode must be reached on ("" for any of them)."""
        return login_host if self.pinned else ""

    @property
    def through_node(self) -> bool:
        return self.far_end == "node"

    @property
    def bind(self) -> str:
        """Batch-script lines that set BIND, the address Jupyter listens on."""
        return _BIND_LOCAL if self.loopback else _BIND_NODE_ADDRESS


MODES: dict[Via, Mode] = {
    # ssh to the node through the login node; Jupyter on the node's loopback, private to the job.
    Via.COMPUTE: Mode(Via.COMPUTE, "node", True, "", _on_node),
    # the login node forwards to node:port; Jupyter on the node's address, guarded by its token only.
    Via.LOGIN: Mode(Via.LOGIN, "login", False, "", _node_address),
    # the job's own `ssh -R` to the login node; Jupyter on the node's loopback.
    Via.REVERSE: Mode(Via.REVERSE, "login", True, _REVERSE_HOP, _reverse, pinned=True),
}
NAMES = tuple(v.value for v in Via)  # also the order in which ``lab.via: auto`` tries them
AUTO = "auto"  # try the modes in order on a cluster the first time, then use the one that worked there
CHOICES = (*NAMES, AUTO)


def mode(via: str) -> Mode:
    """The Mode of a ``lab.via`` value; a LabError naming the modes for any other."""
    try:
        return MODES[Via(via)]
    except ValueError:
        raise LabError(f"lab.via {via!r} is unknown: use one of {', '.join(NAMES)}.") from None


def others(via: str) -> str:
    """The modes to suggest when ``via`` cannot work on a site: ``one of: login, reverse``."""
    return "one of: " + ", ".join(name for name in NAMES if name != Via(via).value)
