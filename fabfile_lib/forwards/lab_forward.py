"""The forward a running lab's mode needs, over whichever carrier the hops ride.

On the OpenSSH transport: a ``-L`` on a link to the compute node (modes through the node) or on the
cluster's master (the login node's side); on Paramiko, the Paramiko forwarder with its heartbeat.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextlib import contextmanager

from .. import commands, modes, probes
from ..errors import AuthenticationError, HostKeyError, LabError
from ..hops import Hops
from ..state import LabRecord
from . import openssh_forward
from .forward import Forward
from .paramiko_forward import Heartbeat, forward_local


def node_link(record: LabRecord, hops: Hops) -> openssh_forward.NodeLink:
    """A link to the lab's compute node for its forwards (OpenSSH transport, modes through the node)."""
    return openssh_forward.NodeLink(lambda *words, control: hops.node_ssh(record.node_addr, *words, control=control),
                                f"cannot forward to {record.node or record.node_addr}")


@contextmanager
def tunnel(record: LabRecord, hops: Hops, local_port: int | None = None, *,
           link: openssh_forward.NodeLink | None = None) -> Iterator[Forward]:
    """Forward a local loopback port to the lab's Jupyter for the duration of the ``with`` body: an
    OpenSSH forward on the OpenSSH transport, our Paramiko forwarder otherwise. ``link``: a link to the
    node opened beforehand (it is closed with the forward)."""
    if not record.reachable:
        raise LabError(f"lab {record.name!r} has not answered yet: `{commands.run('wait')} --name {record.name}`.")
    port_wanted = record.local_port if local_port is None else local_port
    if record.remote_socket and not hops.openssh:
        raise probes.socket_needs_openssh(record)
    if hops.openssh and modes.mode(record.via).through_node:
        try:
            with contextlib.ExitStack() as stack:
                link = stack.enter_context(link or node_link(record, hops))
                with openssh_forward.on_link(link, record.far, port_wanted) as fwd:
                    fwd.add = functools.partial(openssh_forward.on_link, link)
                    yield fwd
        except (HostKeyError, AuthenticationError) as exc:
            raise probes.unreachable_node(exc) from None
    elif hops.openssh:
        with openssh_forward.on_master(hops.master, record.far, port_wanted) as fwd:
            fwd.add = functools.partial(openssh_forward.on_master, hops.master)
            yield fwd
    else:
        transport = probes.far_transport(hops, record)
        with Heartbeat(transport, hops.settings.keepalive) as beat, \
                forward_local(transport, record.remote_host, record.remote_port, port_wanted) as fwd:
            fwd.alive = beat.alive
            fwd.add = functools.partial(_paramiko_add, transport)
            yield fwd


def login_side(hops: Hops):
    """How to add a forward that ends on the login node (``login:PORT``), whatever the lab's mode."""
    if hops.openssh:
        return functools.partial(openssh_forward.on_master, hops.master)
    return functools.partial(_paramiko_add, hops.login().transport)


def _paramiko_add(transport, far: str, local_port: int):
    host, sep, port = far.rpartition(":")
    if not sep or not port.isdigit():
        raise LabError(f"{far}: a Unix socket is forwarded by the OpenSSH transport only (lab.transport).")
    return forward_local(transport, host.strip("[]"), int(port), local_port)
