"""The ways of reaching Jupyter (``lab.via``): one value of :class:`Via` and one :class:`Mode` each.

A mode says three things, and nothing else in the project branches on ``via``:

- where Jupyter listens on the node, and what else the job must run (shell lines for the batch script);
- the far end of the laptop's forward: the compute node itself (an ssh to the node through the login
  node) or the login node (a forward on the kept login);
- what that far end connects to (an :class:`Endpoint`), once Jupyter has written its runtime file.

Where OpenSSH carries the laptop's forward, Jupyter has no TCP port on a shared host: it listens on a
Unix socket, 0600 in a 0700 directory on the node's own disk, and ssh forwards a local port to that
socket (``-L 127.0.0.1:P:/path``). Only the user can connect to it; a TCP port on a node's loopback is
open to every user of the node, with the token as the only guard. Login mode (the login node must reach
Jupyter over the network) and the Paramiko transport (which cannot forward to a socket) keep a port.

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
from .errors import ForwardingRefused, LabError, ModeUnreachable


class Via(str, Enum):
    COMPUTE = "compute"
    LOGIN = "login"
    REVERSE = "reverse"


Read = Callable[[str], "str | None"]  # a file of the lab's directory by name; None while it does not exist

# Where an app on a TCP port listens: the node's loopback, or its address (Slurm's NodeAddr).
_BIND_LOCAL = "LAB_HOST=127.0.0.1"
_BIND_NODE_ADDRESS = r"""LAB_HOST=$(scontrol show node "${SLURMD_NODENAME:-$(hostname)}" -o 2>/dev/null \
       | sed -n 's/.*NodeAddr=\([^ ]*\).*/\1/p')
[ -n "$LAB_HOST" ] || LAB_HOST=$(hostname -I | cut -d' ' -f1)"""
_REVERSE_HOP = r"""# The app's end on the node (LAB_END): its socket, or 127.0.0.1:port.
NODE_END=$LAB_END
REVERSE_LOG="$LAB_DIR/reverse.log"
[ -n "${LAB_SOCK_DIR:-}" ] || LAB_SOCK_DIR=$(mktemp -d /tmp/fl-XXXXXXXX) || lab_fail "cannot make a directory in /tmp"
REVERSE_CTL="$LAB_SOCK_DIR/reverse.ctl"
REVERSE_SSH=(ssh -o BatchMode=yes -o ConnectTimeout=20 -o ServerAliveInterval=30 -S "$REVERSE_CTL")
# One ssh to the login node, a ControlMaster that stays the job's child; its forward is added with
# `-O forward`, which answers only once sshd has accepted or refused it. The far end is a 0600 socket in
# a 0700 directory there (mktemp's, LAB_REVERSE_DIR), or -- without one, or where the site refuses stream-local
# forwarding -- a loopback port sshd picks, which every user of that node can reach (token-only).
reverse_up() {
    "${REVERSE_SSH[@]}" -N -M "$LAB_REVERSE_TARGET" </dev/null 2>>"$REVERSE_LOG" &
    REVERSE_MASTER=$!
    until "${REVERSE_SSH[@]}" -O check "$LAB_REVERSE_TARGET" 2>/dev/null; do
        kill -0 $REVERSE_MASTER 2>/dev/null || return 1
        sleep 0.2
    done
    if [ -n "$LAB_REVERSE_SOCKET" ]; then
        reverse_rmdir  # the directory of a hop that died
        # A name nobody can guess or take first (the lab directory's name is in `scontrol show job`).
        LAB_REVERSE_DIR=$("${REVERSE_SSH[@]}" "$LAB_REVERSE_TARGET" "mktemp -d /tmp/flr-XXXXXXXX" </dev/null \
                          2>>"$REVERSE_LOG") || return 1
        if ! [[ "$LAB_REVERSE_DIR" =~ ^/tmp/flr-[A-Za-z0-9]{8}$ ]]; then
            echo "mktemp on $LAB_REVERSE_TARGET printed no directory of /tmp/flr-XXXXXXXX" >>"$REVERSE_LOG"
            LAB_REVERSE_DIR=
            return 1
        fi
        printf '%s\n' "$LAB_REVERSE_DIR" >"$LAB_SOCK_DIR/reverse.dir"  # for reverse_down, in the batch shell
        "${REVERSE_SSH[@]}" -o ExitOnForwardFailure=yes -O forward -R "$LAB_REVERSE_DIR/s:$NODE_END" \
            "$LAB_REVERSE_TARGET" 2>>"$REVERSE_LOG" || return 1
        echo "fabfile-lab: reverse socket $LAB_REVERSE_DIR/s up" >>"$REVERSE_LOG"
    else
        local port
        port=$("${REVERSE_SSH[@]}" -o ExitOnForwardFailure=yes -O forward -R "127.0.0.1:0:$NODE_END" \
               "$LAB_REVERSE_TARGET" 2>>"$REVERSE_LOG") || return 1
        echo "fabfile-lab: reverse port $port up" >>"$REVERSE_LOG"
    fi
}
# The hop's directory on the login node, over the master, if it is up and there is one.
reverse_rmdir() {
    if [ -n "$LAB_REVERSE_DIR" ] && "${REVERSE_SSH[@]}" -O check "$LAB_REVERSE_TARGET" 2>/dev/null; then
        timeout 3 "${REVERSE_SSH[@]}" "$LAB_REVERSE_TARGET" "rm -rf $LAB_REVERSE_DIR" </dev/null >/dev/null 2>&1
    fi
    LAB_REVERSE_DIR=
}
# As the job ends (lab_end): the directory on the login node -- over the master if Slurm's signal has
# not ended it yet, else with one short ssh --, then the master.
reverse_down() {
    LAB_REVERSE_DIR=$(cat "$LAB_SOCK_DIR/reverse.dir" 2>/dev/null)
    [[ "$LAB_REVERSE_DIR" =~ ^/tmp/flr-[A-Za-z0-9]{8}$ ]] || LAB_REVERSE_DIR=
    if "${REVERSE_SSH[@]}" -O check "$LAB_REVERSE_TARGET" 2>/dev/null; then
        reverse_rmdir
        "${REVERSE_SSH[@]}" -O exit "$LAB_REVERSE_TARGET" 2>/dev/null
    elif [ -n "$LAB_REVERSE_DIR" ]; then
        timeout 3 ssh -o BatchMode=yes -o ConnectTimeout=2 "$LAB_REVERSE_TARGET" "rm -rf $LAB_REVERSE_DIR" \
            </dev/null >/dev/null 2>&1
    fi
}
if [ -n "$NODE_END" ]; then
    # A hop that dies later (the login node's sshd restarted, a network blip) is made again while
    # Jupyter runs; the marker lines tell the tool where the hop is, and when it is down.
    ( delay=5
      while kill -0 $APP_PID 2>/dev/null; do
          before=$(wc -c <"$REVERSE_LOG" 2>/dev/null || echo 0)
          if reverse_up; then
              delay=5
              while kill -0 $APP_PID 2>/dev/null && kill -0 $REVERSE_MASTER 2>/dev/null; do
                  sleep 2
              done
          elif [ -n "$LAB_REVERSE_SOCKET" ] \
               && tail -c +$((before + 1)) "$REVERSE_LOG" | grep -q -e "listen path" -e "prohibited"; then
              echo "fabfile-lab: stream-local forwarding refused by $LAB_REVERSE_TARGET: Jupyter is reached" \
                   "through a port on its loopback instead (token-only)" >>"$REVERSE_LOG"
              LAB_REVERSE_SOCKET=
              reverse_rmdir
              rm -f "$LAB_SOCK_DIR/reverse.dir"
              "${REVERSE_SSH[@]}" -O exit "$LAB_REVERSE_TARGET" 2>/dev/null
              continue
          fi
          "${REVERSE_SSH[@]}" -O exit "$LAB_REVERSE_TARGET" 2>/dev/null
          echo "fabfile-lab: reverse ssh exited" >>"$REVERSE_LOG"
          kill -0 $APP_PID 2>/dev/null || break
          sleep $delay
          [ $delay -lt 60 ] && delay=$((delay * 2))
      done ) &
    REVERSE_PID=$!
fi"""
REVERSE_LOG = "reverse.log"
_ALLOCATED = re.compile(r"Allocated port (\d{1,5}) for remote forward.*")
_SOCKET_UP = re.compile(r"fabfile-lab: reverse socket (\S+) up")
_PORT_UP = re.compile(r"fabfile-lab: reverse port (\d{1,5}) up")
_EXITED = "fabfile-lab: reverse ssh exited"
_MARK = "fabfile-lab: "


@dataclass(frozen=True)
class Endpoint:
    """What the far end of the laptop's forward connects to: a Unix socket there, or ``host:port``."""

    host: str = ""
    port: int = 0
    socket: str = ""

    def __str__(self) -> str:
        return self.socket or f"{self.host}:{self.port}"


def _on_node(runtime: dict, node_addr: str, read: Read) -> Endpoint | None:
    sock = runtime.get("sock")
    if sock:
        if not untrusted.socket_path(sock):
            raise LabError(f"Jupyter's runtime file names a socket that is not a plain path ({str(sock)[:60]!r}): "
                           "refusing it.")
        return Endpoint(socket=sock)
    return Endpoint("127.0.0.1", int(runtime["port"]))


def _node_address(runtime: dict, node_addr: str, read: Read) -> Endpoint | None:
    listed = runtime.get("hostname")
    return Endpoint(listed if untrusted.host(listed) else node_addr, int(runtime["port"]))


def reverse_endpoint(text: str) -> Endpoint | None:
    """Where the job's ``ssh -R`` comes out on the login node, from its log: the newest hop (the job makes
    it again when it dies) -- a socket, or a port sshd allocated --; None while it is not up (yet, or
    again). ModeUnreachable if the job's first hop failed: this site will not let it through."""
    current: Endpoint | None = None
    ever = False
    failure = ""
    for line in text.splitlines():
        if (allocated := _ALLOCATED.search(line)) and untrusted.port(int(allocated.group(1))):
            current, ever = Endpoint("127.0.0.1", int(allocated.group(1))), True
        elif (up := _SOCKET_UP.fullmatch(line.strip())) and untrusted.socket_path(up.group(1)):
            current, ever = Endpoint(socket=up.group(1)), True
        elif (up := _PORT_UP.fullmatch(line.strip())) and untrusted.port(int(up.group(1))):
            current, ever = Endpoint("127.0.0.1", int(up.group(1))), True
        elif line.startswith(_EXITED):
            refused, said = _hop_refused(text)
            if not ever and refused:
                raise refusal(Via.REVERSE.value, refused, "the login node (the job's reverse hop)", said)
            if not ever:
                raise ModeUnreachable(f"the job's reverse ssh to the login node failed ({failure or 'no reason given'})"
                                      f"; set lab.via to {others(Via.REVERSE)}, or fix lab.reverse_target and the "
                                      "node's ssh key.")
            current = None
        elif line.strip() and not line.startswith(_MARK):
            failure = untrusted.printable(line.strip(), 200)
    return current


_FELL_BACK = "fabfile-lab: stream-local forwarding refused by"


def _hop_refused(text: str) -> tuple[frozenset[str], str]:
    """What the login node refused the job's hop, from its log -- a socket (the job then fell back to a
    port), a port, both, or nothing -- and sshd's words for the last refusal."""
    said = [ln.strip() for ln in text.splitlines() if "forwarding failed for listen" in ln]
    refused = {STREAMLOCAL} if _FELL_BACK in text or any("listen path" in ln for ln in said) else set()
    if any("listen port" in ln for ln in said):
        refused.add(TCP)
    return frozenset(refused), untrusted.printable(said[-1], 200) if said else ""


def _reverse(runtime: dict, node_addr: str, read: Read) -> Endpoint | None:
    return reverse_endpoint(read(REVERSE_LOG) or "")


TCP, STREAMLOCAL = "tcp", "streamlocal"  # the kinds of forwarding a login node's sshd may refuse


@dataclass(frozen=True)
class Mode:
    via: Via
    far_end: Literal["node", "login"]  # where the laptop's forward comes out
    loopback: bool  # Jupyter listens on the node's 127.0.0.1 (else on the node's address: token only)
    after_start: str  # batch-script lines run once the app listens (APP_PID and LAB_END set); "" for none
    endpoint: Callable[[dict, str, Read], Endpoint | None]  # (runtime file, NodeAddr, read) -> far end
    socket: bool = False  # Jupyter on a private Unix socket where OpenSSH carries the laptop's forward
    pinned: bool = False  # its far end lives on the one login node the job was submitted from (and moves
    # when the job makes its hop there again: read it anew before each forward)
    carried_by: tuple[str, ...] = (TCP,)  # the forwarding at the login node it can go through (any of them)

    def pin(self, login_host: str) -> str:
        """The login node a lab of this mode must be reached on ("" for any of them)."""
        return login_host if self.pinned else ""

    @property
    def through_node(self) -> bool:
        return self.far_end == "node"

    def private(self, openssh: bool) -> bool:
        """Whether Jupyter listens on a private socket (0600, in a 0700 directory): only OpenSSH can
        forward to one (Paramiko cannot), and login mode needs a port the login node can reach."""
        return self.socket and openssh

    @property
    def bind(self) -> str:
        """Batch-script lines that set LAB_HOST: where an app on a TCP port listens in this mode."""
        return _BIND_LOCAL if self.loopback else _BIND_NODE_ADDRESS


MODES: dict[Via, Mode] = {
    # ssh to the node through the login node; Jupyter on a private socket there (a port on the node's
    # loopback where Paramiko carries the forward).
    Via.COMPUTE: Mode(Via.COMPUTE, "node", True, "", _on_node, socket=True),
    # the login node forwards to node:port; Jupyter on the node's address, guarded by its token only.
    Via.LOGIN: Mode(Via.LOGIN, "login", False, "", _node_address),
    # the job's own `ssh -R` to the login node; Jupyter on a private socket on the node, and the hop's far
    # end a private socket on the login node (ports on loopbacks where Paramiko carries the forward).
    Via.REVERSE: Mode(Via.REVERSE, "login", True, _REVERSE_HOP, _reverse, socket=True, pinned=True,
                      carried_by=(STREAMLOCAL, TCP)),
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


def possible(refused: frozenset[str], but: str = "") -> list[str]:
    """The modes (other than ``but``) that a login node refusing the ``refused`` kinds of forwarding can
    still carry."""
    return [name for name in NAMES if name != but and any(k not in refused for k in MODES[Via(name)].carried_by)]


def refusal(via: str, refused: frozenset[str], host: str, said: str) -> ForwardingRefused:
    """The error for a forward the login node refused in mode ``via``: the host, sshd's words, and only the
    modes that the same refusal leaves possible."""
    what = " and ".join({TCP: "TCP", STREAMLOCAL: "Unix-socket (stream-local)"}[k] for k in sorted(refused))
    left = possible(refused, via)
    if left:
        needs = " (it needs forwarding to a Unix socket there)" if refused == {TCP} else ""
        advice = f"set lab.via to {' or '.join(left)}{needs}, or ask the site to allow forwarding"
    else:
        advice = ("no mode can reach Jupyter through a login node that refuses forwarding: ask the site to allow "
                  "it (sshd AllowTcpForwarding / AllowStreamLocalForwarding), or use another login host")
    return ForwardingRefused(f"{host} refuses {what} forwarding ({via} mode needs it; ssh: \"{said}\"): {advice}.",
                             refused)


def others(via: str) -> str:
    """The modes to suggest when ``via`` cannot work on a site: ``one of: login, reverse``."""
    return "one of: " + ", ".join(name for name in NAMES if name != Via(via).value)
