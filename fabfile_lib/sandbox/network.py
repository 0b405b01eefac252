"""The sandbox's network: one namespace per host, a veth link per hop, and a blackhole route.

The blackhole route for the whole sandbox range is added in the root namespace *before* any link exists
and removed *after* every link is gone: at no moment can a packet addressed to a sandbox host that is not
on a local link leave through the machine's default route. The laptop (root namespace) has a link to the
jump host only, and no namespace forwards: login and compute can be reached only through the SSH hops.
"""

from __future__ import annotations

import ipaddress

from .config import Link, SandboxConfig
from .system import run


def namespaces() -> set[str]:
    return {line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()}


def _route_exists(subnet: str) -> bool:
    return bool(run(["ip", "route", "show", "type", "blackhole", subnet]).strip())


def _ns(netns: str | None) -> list[str]:
    return ["ip", "-n", netns] if netns else ["ip"]


def _ifname(cfg: SandboxConfig, side: str | None, peer: str | None) -> str:
    """Interface names: the root namespace's must be unique machine-wide, the others only per namespace."""
    return cfg.root_ifname if side is None else f"to-{peer or 'laptop'}"


def up(cfg: SandboxConfig) -> None:
    if not _route_exists(cfg.subnet):
        run(["ip", "route", "add", "blackhole", cfg.subnet])
    existing = namespaces()
    for host in cfg.hosts:
        ns = cfg.netns(host)
        if ns not in existing:
            run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # A namespace must never route between its links: the hops are SSH's job.
        run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])
    for link in cfg.addresses.links:
        _link_up(cfg, link)
    for host in cfg.hosts:
        for dest, gateway in cfg.addresses.routes(host):
            run(["ip", "-n", cfg.netns(host), "route", "replace", f"{dest}/32", "via", gateway])


def _link_up(cfg: SandboxConfig, link: Link) -> None:
    left_ns = cfg.netns(link.left) if link.left else None
    right_ns = cfg.netns(link.right)
    left_if = _ifname(cfg, link.left, link.right)
    right_if = _ifname(cfg, link.right, link.left)
    if _has_link(left_ns, left_if):
        return
    run([*_ns(left_ns), "link", "add", left_if, "type", "veth", "peer", "name", right_if, "netns", right_ns])
    run([*_ns(left_ns), "addr", "add", f"{link.left_addr}/{link.prefix}", "dev", left_if])
    run([*_ns(right_ns), "addr", "add", f"{link.right_addr}/{link.prefix}", "dev", right_if])
    run([*_ns(left_ns), "link", "set", left_if, "up"])
    run([*_ns(right_ns), "link", "set", right_if, "up"])


def _has_link(netns: str | None, ifname: str) -> bool:
    return run([*_ns(netns), "link", "show", ifname], check=False).strip() != ""


def pids(cfg: SandboxConfig) -> list[int]:
    """Every process living in one of this sandbox's namespaces (all started by the sandbox)."""
    found: list[int] = []
    live = namespaces()
    for host in cfg.hosts:
        if cfg.netns(host) in live:
            found += [int(p) for p in run(["ip", "netns", "pids", cfg.netns(host)], check=False).split()]
    return found


def down(cfg: SandboxConfig) -> None:
    live = namespaces()
    for host in cfg.hosts:
        if cfg.netns(host) in live:
            run(["ip", "netns", "delete", cfg.netns(host)])
    # Deleting the jump namespace destroys the veth pair; this covers a half-made link.
    if _has_link(None, cfg.root_ifname):
        run(["ip", "link", "delete", cfg.root_ifname])
    if _route_exists(cfg.subnet) and not _range_in_use(cfg):
        # TCP connections of the laptop side to the sandbox (a kept login, a forward) outlive its links; once
        # the route is gone their retransmissions would take the default route: close them first.
        run(["ss", "-K", "-tn", "dst", cfg.subnet], check=False)
        run(["ip", "route", "delete", "blackhole", cfg.subnet])


def _range_in_use(cfg: SandboxConfig) -> bool:
    """Whether a link of the root namespace still has an address in the range (another sandbox that was
    given the same range): its blackhole route must stay."""
    for line in run(["ip", "-4", "-o", "addr", "show"]).splitlines():
        words = line.split()
        if "inet" in words:
            addr = words[words.index("inet") + 1].split("/")[0]
            if ipaddress.IPv4Address(addr) in cfg.network:
                return True
    return False


def is_up(cfg: SandboxConfig) -> bool:
    live = namespaces()
    return all(cfg.netns(h) in live for h in cfg.hosts) and _has_link(None, cfg.root_ifname)
