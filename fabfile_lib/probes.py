"""Is Jupyter answering? ``GET /api/status`` along the lab's own path, or through the local forward.

The probe goes where the laptop's forward will go (see ``modes.py``): from the compute node (``ssh -W``
through the kept login, or a Paramiko channel from the node) or from the login node. A refused or failing
path is reported, not retried here: the caller knows how long it may wait.
"""

from __future__ import annotations

import re
import shlex
import socket
from typing import TYPE_CHECKING

from . import apps, lazy, modes
from .errors import AuthenticationError, ForwardingRefused, HostKeyError, LabError, ModeUnreachable, PromptNeeded
from .remote import run_command
from .state import LabRecord

if TYPE_CHECKING:
    import paramiko

    from .hops import Hops

openssh_stream = lazy.Module("fabfile_lib.forwards.openssh_stream")  # a probe along the hops only


def unreachable_node(exc: LabError) -> LabError:
    """``exc`` from the hop to a compute node, with what to do about it."""
    return ModeUnreachable(f"{exc} -- the compute node cannot be reached over ssh from the login node; "
                           f"set lab.via to {modes.others(modes.Via.COMPUTE)}.")


def far_transport(hops: Hops, record: LabRecord) -> paramiko.Transport:
    """The Paramiko transport whose far end reaches Jupyter in this lab's mode."""
    login = hops.login()  # a failure before the login node is not the compute node's
    if not modes.mode(record.via).through_node:
        return login.transport
    try:
        return hops.node(record.node_addr).transport
    except LabError as exc:
        raise unreachable_node(exc) from None


def socket_needs_openssh(record: LabRecord) -> LabError:
    return ModeUnreachable(f"lab {record.name!r} has Jupyter on a private socket on the cluster, which only OpenSSH "
                           "can forward (Paramiko cannot): use lab.transport: openssh where an OpenSSH client is "
                           "installed, or start labs for this machine with lab.transport: paramiko.")


def _stream(hops: Hops, record: LabRecord):
    """A byte stream to Jupyter as seen from the far end of this lab's mode: ``ssh -W`` on the OpenSSH
    transport (a forward from a private socket of ours to Jupyter's socket), a ``direct-tcpip`` channel on
    Paramiko's."""
    host, port = record.remote_host, record.remote_port
    if record.remote_socket:
        return _socket_stream(hops, record)
    if hops.openssh:
        if modes.mode(record.via).through_node:
            argv = hops.node_ssh(record.node_addr, "-W", f"{host}:{port}")
            return openssh_stream.Stream(argv, f"cannot reach {record.node} over ssh from the login node")
        login = hops.master.address
        return openssh_stream.Stream(login.argv("-W", f"{host}:{port}", login.dest), f"{host}:{port}")
    return far_transport(hops, record).open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=10)


def _socket_stream(hops: Hops, record: LabRecord) -> openssh_stream.UnixStream:
    """(OpenSSH only: http_status refuses a socket on Paramiko before it gets here.)"""
    far = record.remote_socket
    if modes.mode(record.via).through_node:
        what = f"cannot reach {record.node} over ssh from the login node"
        def argv(local: str) -> list[str]:
            return hops.node_ssh(record.node_addr, "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"{local}:{far}")

        return openssh_stream.UnixStream(lambda local: openssh_stream.unix_via_ssh(argv(local), local, what))
    return openssh_stream.UnixStream(lambda local: openssh_stream.unix_on_master(hops.master, local, far))


def ready_request(app: apps.App, host: str) -> bytes:
    """GET the app's ready path: it answers without the secret, so none is sent."""
    return f"GET {app.ready_path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode()


def status_code(head: bytes) -> int:
    """The HTTP status in the first bytes of a response; 0 if they are not one."""
    match = re.match(r"HTTP/1\.\d (\d{3})", head.decode(errors="replace"))
    return int(match.group(1)) if match else 0


def refused(hops: Hops, record: LabRecord, said: str) -> LabError:
    """The login node refused this lab's forward: which kind it was asked for (the ``-W`` to the node, or a
    forward to a port, is TCP; to a socket there, stream-local), and what can still work."""
    kind = modes.STREAMLOCAL if record.remote_socket and not modes.mode(record.via).through_node else modes.TCP
    return modes.refusal(record.via, frozenset({kind}), hops.settings.login, said)


def _socket_refused(hops: Hops, record: LabRecord, said: str) -> bool:
    """sshd answers a stream-local forward it refuses (``AllowStreamLocalForwarding no``) with "connect
    failed", as it answers one to a socket that is not there: on the login node, a socket that is there
    tells them apart (one command over the kept login, only after such a failure)."""
    if "connect failed" not in said or not record.remote_socket or modes.mode(record.via).through_node:
        return False
    return run_command(hops.shell(), f"test -S {shlex.quote(record.remote_socket)}", timeout=15).exited == 0


def http_status(hops: Hops, record: LabRecord) -> tuple[int, str]:
    """GET /api/status through the lab's path: (HTTP status, "") or (0, why Jupyter could not be reached).
    A forward the login node refuses is a ForwardingRefused at once: waiting will not open it."""
    import paramiko  # its errors, on either transport (SFTP and a Paramiko node hop raise them)

    through_node = modes.mode(record.via).through_node
    if record.remote_socket and not hops.openssh:
        raise socket_needs_openssh(record)
    try:
        stream = _stream(hops, record)
    except paramiko.ChannelException as exc:
        if exc.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
            raise refused(hops, record, str(exc)) from None
        return 0, str(exc)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        return 0, str(exc) or type(exc).__name__
    except (HostKeyError, AuthenticationError, PromptNeeded) as exc:
        raise unreachable_node(exc) if through_node else exc from None
    except ForwardingRefused as exc:
        raise refused(hops, record, exc.said) from None
    except LabError as exc:  # the forward to a socket could not be set up
        return 0, str(exc)
    try:
        stream.settimeout(10)
        stream.sendall(ready_request(record.app_spec, record.remote_host or "localhost"))  # a socket: localhost
        head = stream.recv(64)
    except (TimeoutError, OSError, paramiko.SSHException):
        head = b""
    finally:
        stream.close()
    failure = stream.failure() if isinstance(stream, (openssh_stream.Stream, openssh_stream.UnixStream)) else None
    if isinstance(failure, ForwardingRefused):
        raise refused(hops, record, failure.said)
    if failure is not None and _socket_refused(hops, record, str(failure)):
        raise refused(hops, record, str(failure))
    if isinstance(failure, (HostKeyError, AuthenticationError, PromptNeeded)):
        raise unreachable_node(failure) if through_node else failure
    return status_code(head), str(failure or "")


def _loopback(port: int, timeout: float) -> socket.socket:
    """A connection to our own listener on 127.0.0.1 (an address, never a name to resolve: no resolver, and
    none of the IDNA codec that a name's lookup imports)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def answers(port: int, app: apps.App = apps.BUILT_IN[apps.DEFAULT], timeout: float = 5) -> bool:
    """Whether the app answers through the local forward on ``port``, end to end: an unauthenticated
    ``GET`` of its ready path (Jupyter's ``/api`` answers with its version), so no secret goes to whatever
    holds the port."""
    try:
        with _loopback(port, timeout) as sock:
            sock.sendall(ready_request(app, "127.0.0.1"))
            head = b""
            while len(head) < 4096 and not _ready(head, app):  # not waiting for the close to come back
                chunk = sock.recv(4096)  # through the hops: that alone took 40 ms here
                if not chunk:
                    break
                head += chunk
    except OSError:
        return False
    return _ready(head, app)


def _ready(head: bytes, app: apps.App) -> bool:
    _, sep, body = head.partition(b"\r\n\r\n")
    return bool(sep) and status_code(head) == 200 and app.ready_text.encode() in body


def check_url(record: LabRecord, port: int, timeout: float = 10) -> int:
    """HTTP status of the app's ready path through the local forward on ``port`` (0 if nothing answers)."""
    try:
        with _loopback(port, timeout) as sock:
            sock.sendall(ready_request(record.app_spec, "127.0.0.1"))
            return status_code(sock.recv(64))
    except OSError:
        return 0
