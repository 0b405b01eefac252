"""Where each host of a sandbox is: the veth links between the hosts, their addresses and the routes.

All derived from the sandbox's private subnet (``sandbox.subnet``): the laptop--jump link takes its
first /30, jump--login the second, login--compute the third; a second login node (``login_nodes: 2``)
takes three more, as its own links to the jump host, the compute node and the first login node.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..errors import LabError

HOSTS = ("jump", "login", "compute")


@dataclass(frozen=True)
class Link:
    """A veth pair: ``left`` side (``None`` = the root namespace, the laptop) and ``right`` side."""

    left: str | None
    right: str
    left_addr: str
    right_addr: str
    prefix: int = 30


@dataclass(frozen=True)
class Addresses:
    """The links and addresses of a sandbox on ``subnet`` with ``login_nodes`` login nodes."""

    subnet: str
    login_nodes: int = 1

    @property
    def network(self) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(self.subnet, strict=True)
        except ValueError as exc:
            raise LabError(f"sandbox.subnet {self.subnet!r} is not an IPv4 network: {exc}.") from None

    @property
    def links(self) -> tuple[Link, ...]:
        base = self.network.network_address
        links = (
            Link(None, "jump", str(base + 1), str(base + 2)),
            Link("jump", "login", str(base + 5), str(base + 6)),
            Link("login", "compute", str(base + 9), str(base + 10)),
        )
        if self.login_nodes == 1:
            return links
        # login2: reached from the jump host, reaches the compute node and (for Slurm) the login node.
        return (*links, Link("jump", "login2", str(base + 13), str(base + 14)),
                Link("login2", "compute", str(base + 17), str(base + 18)),
                Link("login", "login2", str(base + 21), str(base + 22)))

    def routes(self, host: str) -> tuple[tuple[str, str], ...]:
        """(destination, gateway) routes a host needs beyond its links: login2 reaches slurmctld and the
        compute node's NodeAddr at the addresses every other host uses (no namespace forwards: the
        gateway is the very host that owns the destination address)."""
        if host != "login2":
            return ()
        base = self.network.network_address
        return ((self.login_from_compute, str(base + 21)), (self.of("compute"), str(base + 18)))

    def of(self, host: str) -> str:
        """The address by which a host is reached from the host before it in the chain."""
        return next(link.right_addr for link in self.links if link.right == host)

    def from_compute(self, host: str) -> str:
        """A login node's address as the compute node reaches it (the target of the reverse hop)."""
        return self.login_from_compute if host == "login" else next(
            link.left_addr for link in self.links if link.left == host and link.right == "compute")

    @property
    def login_from_compute(self) -> str:
        """The login node's address on the login--compute link: the target of the reverse hop."""
        return self.links[2].left_addr
