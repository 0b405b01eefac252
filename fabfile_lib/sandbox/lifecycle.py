"""Bringing a sandbox up, taking it down, and telling whether it is up.

``up`` is idempotent: every step checks what already exists. ``down`` derives everything to remove from
the configuration alone (names, range, directory), so it also cleans up after an ``up`` that failed half
way, and running it twice is harmless.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import file_trust
from ..errors import LabError
from . import cluster, code_server, daemons, network
from .config import SandboxConfig
from .system import ensure_packages, require_root, run

READY_MARK = ".fabfile-lab-ready"
Echo = Callable[[str], None]
_log = logging.getLogger(__name__)


@dataclass
class HostStatus:
    address: str
    hostname: str
    netns: str


@dataclass
class SandboxStatus:
    up: bool
    name: str
    user: str
    dir: str
    ssh_config: str
    lab_config: str
    hosts: dict[str, HostStatus]
    daemons: dict[str, int | None] = field(default_factory=dict)
    mfa: bool = False
    totp_secret: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def recorded(cfg: SandboxConfig) -> SandboxConfig:
    """``cfg`` with the range and options its sandbox was brought up with, if it was: ``down`` and
    ``status`` must act on what ``up`` made, whatever flags they are given."""
    try:
        data = json.loads(cfg.state_file.read_text())
    except (OSError, ValueError):
        return cfg
    return dataclasses.replace(cfg, subnet=data.get("subnet", cfg.subnet), mfa=bool(data.get("mfa", cfg.mfa)),
                               login_nodes=int(data.get("login_nodes", cfg.login_nodes)))


def _record(cfg: SandboxConfig, up: bool, user_made: bool | None = None) -> None:
    """What ``up`` made, for ``down``: the range and options, and whether it made the cluster user."""
    made = _user_made(cfg) if user_made is None else user_made
    cfg.state_file.write_text(json.dumps({"up": up, "subnet": cfg.subnet, "mfa": cfg.mfa,
                                          "login_nodes": cfg.login_nodes, "user_made": made}) + "\n")


def _user_made(cfg: SandboxConfig) -> bool:
    try:
        return bool(json.loads(cfg.state_file.read_text()).get("user_made"))
    except (OSError, ValueError, AttributeError):
        return False


def _check_root_owned(cfg: SandboxConfig) -> None:
    """Root writes configs, the munge key and pidfiles under the sandbox's directory and runs the venv's
    programs: whoever could have made or changed them first (``/var/tmp/fabfile-lab`` made by another
    account, a planted ready-venv) would own root. Every part of both paths, parents included, is root's
    and writable by nobody else (a root-owned sticky ``/var/tmp`` is fine), or nothing is used."""
    venv = Path(cfg.venv)
    for what, path in (("sandbox.dir", cfg.path), ("sandbox.venv", venv), ("sandbox.venv", venv / "bin" / "pip"),
                       ("sandbox.venv", venv / READY_MARK),
                       *((("sandbox.code_server", Path(cfg.code_server)),) if cfg.code_server else ())):
        why = file_trust.untrusted_because(path, owners={file_trust.ROOT})
        if why:
            raise LabError(f"{what} {path}: {why}, so root cannot trust what is there: remove it or choose another "
                           "path; nothing was used.")


def _check_ours(cfg: SandboxConfig) -> None:
    """``up`` changes nothing that a sandbox did not make: not an existing directory, account or Python
    environment (it would chmod, own, wipe or remove them)."""
    _check_root_owned(cfg)
    if cfg.path.exists() and not cfg.state_file.exists() and (not cfg.path.is_dir() or any(cfg.path.iterdir())):
        raise LabError(f"sandbox.dir {cfg.path} exists and is not a sandbox's (no {cfg.state_file.name}): choose "
                       "another directory; nothing was changed.")
    if cluster.user_exists(cfg.username) and not _user_made(cfg):
        raise LabError(f"sandbox.user {cfg.username} is an existing account that `inv sandbox.up` did not make: "
                       "choose another name (the sandbox makes its own user and removes it); nothing was changed.")
    venv = Path(cfg.venv)
    if venv.exists() and not (venv / READY_MARK).exists() and (not venv.is_dir() or any(venv.iterdir())):
        raise LabError(f"sandbox.venv {venv} exists and is not a sandbox's JupyterLab environment: choose another "
                       "path; nothing was changed.")


def _recorded_up(cfg: SandboxConfig) -> bool:
    try:
        return bool(json.loads(cfg.state_file.read_text()).get("up"))
    except (OSError, ValueError):
        return False


def status(cfg: SandboxConfig) -> SandboxStatus:
    cfg = recorded(cfg)
    alive = {name: daemons.read_pidfile(cfg.run_dir / f"{name}.pid") for name in cluster.daemon_pidfiles(cfg)}
    is_up = _recorded_up(cfg) and network.is_up(cfg) and all(alive.values())
    hosts = {h: HostStatus(cfg.address(h), cfg.hostname(h), cfg.netns(h)) for h in cfg.hosts}
    mfa = cfg.totp_secret.exists()
    return SandboxStatus(is_up, cfg.name, cfg.username, cfg.dir, str(cfg.ssh_config), str(cfg.lab_config),
                         hosts, alive, mfa, str(cfg.totp_secret) if mfa else "")


def up(cfg: SandboxConfig, echo: Echo = _log.info) -> SandboxStatus:
    require_root()
    ensure_packages(echo, mfa=cfg.mfa, code_server=bool(cfg.code_server))
    before = recorded(cfg)
    if cfg.state_file.exists() and before.subnet != cfg.subnet:
        raise LabError(f"sandbox {cfg.name} is already up in {before.subnet}: `inv sandbox.down --name {cfg.name}` "
                       "first, or choose another name.")
    _check_ours(cfg)
    _check_no_clash(cfg)
    cfg.path.mkdir(mode=0o755, parents=True, exist_ok=True)
    cfg.path.chmod(0o755)  # the cluster user must traverse it to reach its home
    _record(cfg, up=False)  # first: a `down` after an interrupted `up` must know the range
    for sub in (cfg.run_dir, cfg.log_dir):
        sub.mkdir(mode=0o700, exist_ok=True)
    echo(f"network: namespaces {', '.join(cfg.netns(h) for h in cfg.hosts)} in {cfg.subnet}")
    network.up(cfg)
    if cluster.ensure_user(cfg):
        _record(cfg, up=False, user_made=True)
    cluster.ensure_keys(cfg)
    if cfg.mfa:
        echo(f"second factor: the jump host asks for a TOTP code (secret in {cfg.totp_secret})")
        cluster.ensure_mfa(cfg)
    echo("daemons: munged, slurmctld (login), slurmd (compute), sshd (jump, login, compute)")
    cluster.start_munge(cfg)
    cluster.start_slurm(cfg)
    for host in cfg.hosts:
        cluster.start_sshd(cfg, host)
    ensure_venv(cfg, echo)
    if cfg.code_server:
        code_server.ensure(Path(cfg.code_server), echo)
    write_client_configs(cfg)
    _wait_for_chain(cfg)
    _wait_for_node(cfg)
    _record(cfg, up=True)
    return status(cfg)


def _check_no_clash(cfg: SandboxConfig) -> None:
    """Refuse a range that overlaps a route the machine already has (another sandbox, a real LAN)."""
    if cfg.state_file.exists() or network.is_up(cfg):
        return
    for line in run(["ip", "-4", "route", "show"]).splitlines():
        dest = line.split()[0]
        if dest == "default" or line.startswith(("broadcast", "local")):
            continue
        if dest.startswith("blackhole"):
            dest = line.split()[1]
        try:
            other = ipaddress.IPv4Network(dest if "/" in dest else f"{dest}/32", strict=False)
        except ValueError:
            continue
        if other.overlaps(cfg.network):
            raise LabError(f"sandbox.subnet {cfg.subnet} overlaps the existing route `{line.strip()}`: "
                           "choose another range (inv sandbox.up --subnet ...) or another sandbox name.")


def ensure_venv(cfg: SandboxConfig, echo: Echo = _log.info) -> None:
    """The compute node's JupyterLab environment, made once and shared by every sandbox (a cache kept
    by ``down``). It is built with /usr/bin/python3 so the cluster user can run it."""
    venv, wanted = Path(cfg.venv), sorted(cfg.jupyter_packages)
    mark = venv / READY_MARK
    have = mark.read_text().split() if mark.exists() else None
    if have is not None and set(wanted) <= set(have):
        return
    if have is None:
        echo(f"python env: creating {venv} with {' '.join(wanted)} (once; a few minutes)...")
        if venv.exists():
            shutil.rmtree(venv)
        venv.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        run(["/usr/bin/python3", "-m", "venv", str(venv)])
    else:
        echo(f"python env: adding {' '.join(sorted(set(wanted) - set(have)))} to {venv}...")
    run([str(venv / "bin" / "pip"), "install", "-q", *wanted], timeout=1200)
    mark.write_text(" ".join(sorted({*wanted, *(have or ())})) + "\n")


SECOND_CLUSTER = "cluster-b"


def ssh_config_text(cfg: SandboxConfig) -> str:
    hops = {"jump": None, "login": "jump", "compute": "login"}
    blocks = []
    for host, via in hops.items():
        if host == "login" and cfg.login_nodes > 1:
            blocks.append(_login_nodes_block(cfg))
            continue
        block = f"Host {host}\n    HostName {cfg.address(host)}\n"
        if via:
            block += f"    ProxyJump {via}\n"
        blocks.append(block)
    # The login node as a site that forbids all forwarding shows it (sshd's port 2223).
    blocks.append(f"Host login-noforward\n    HostName {cfg.address('login')}\n    Port {cluster.NO_FORWARDING_PORT}\n"
                  f"    HostKeyAlias {cfg.address('login')}\n    ProxyJump jump\n")
    # The same login node under a second name: to the tool, a second cluster (its own login, its own labs).
    blocks.append(f"Host {SECOND_CLUSTER}\n    HostName {cfg.address('login')}\n    ProxyJump jump\n")
    blocks.append(
        "Host *\n"
        f"    User {cfg.username}\n"
        f"    IdentityFile {cfg.identity}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {cfg.known_hosts}\n"
        "    StrictHostKeyChecking yes\n"
        # With a second factor, ssh must be free to ask for the code on the terminal.
        f"{'' if cfg.mfa else '    BatchMode yes' + chr(10)}"
        "    ConnectTimeout 10\n"
        "    ServerAliveInterval 15\n"
    )
    return "# Written by `inv sandbox.up`; removed by `inv sandbox.down`.\n" + "\n".join(blocks)


def _login_nodes_block(cfg: SandboxConfig) -> str:
    """``login`` is the cluster's one name, which the resolver gives each login node in turn; each node's
    own name (``hostname``) reaches that node."""
    names = " ".join([cfg.cluster_name, *(cfg.hostname(h) for h in cfg.login_hosts)])
    return (f"Host login\n    HostName {cfg.cluster_name}\n    ProxyCommand {cfg.resolver} %h %p\n\n"
            f"Host {names}\n    ProxyCommand {cfg.resolver} %h %p\n")


def resolver_text(cfg: SandboxConfig) -> str:
    """Stands in for DNS round robin on the laptop: the cluster's name resolves to each login node in
    turn, one per new connection; a node's own name to that node. Then through the jump host."""
    cases = "".join(f"    {cfg.hostname(h)}) addr={cfg.address(h)} ;;\n" for h in cfg.login_hosts)
    addresses = " ".join(cfg.address(h) for h in cfg.login_hosts)
    return (f"#!/bin/bash\n# Written by `inv sandbox.up`: DNS round robin for {cfg.cluster_name}, standing in.\n"
            "set -eu\n"
            'case "$1" in\n'
            f"    {cfg.cluster_name})\n"
            f"        addrs=({addresses})\n"
            f"        exec 9>>{cfg.run_dir}/resolver.lock\n"
            "        flock 9\n"
            f"        n=$(cat {cfg.run_dir}/resolver.turn 2>/dev/null || echo 0)\n"
            f"        echo $((n + 1)) > {cfg.run_dir}/resolver.turn\n"
            "        addr=${addrs[$((n % ${#addrs[@]}))]}\n"
            "        exec 9>&- ;;\n"
            f"{cases}"
            '    *) addr=$1 ;;\n'
            "esac\n"
            f'exec ssh -F {cfg.ssh_config} -W "$addr:$2" jump\n')


def lab_config_text(cfg: SandboxConfig) -> str:
    return (
        "# Points the lab tasks at this sandbox: inv -f THIS_FILE lab.start\n"
        "lab:\n"
        f"  ssh_config: {cfg.ssh_config}\n"
        "  login: login\n"
        "  sbatch:\n"
        "    partition: debug\n"
        "    time: '02:00:00'\n"
        "  setup:\n"
        f"    - source {cfg.venv}/bin/activate\n"
        + (f"    - export PATH={code_server.binary(Path(cfg.code_server)).parent}:$PATH\n" if cfg.code_server else "")
    )


def write_client_configs(cfg: SandboxConfig) -> None:
    cfg.ssh_config.write_text(ssh_config_text(cfg))
    cfg.ssh_config.chmod(0o644)
    if cfg.login_nodes > 1:
        cfg.resolver.parent.mkdir(parents=True, exist_ok=True)
        cfg.resolver.write_text(resolver_text(cfg))
        cfg.resolver.chmod(0o755)
    cfg.lab_config.write_text(lab_config_text(cfg))


def _chain_checks(cfg: SandboxConfig) -> list[list[str]]:
    """Commands that succeed once every hop's sshd takes the user's key.

    With a second factor the laptop cannot pass the jump host unattended (and a code spent here could not
    be used again in the same 30 s), so each hop is then checked from the host before it.
    """
    ssh = ["ssh", "-F", str(cfg.ssh_config), "-o", "BatchMode=yes"]
    if not cfg.mfa:
        return [[*ssh, "compute", "true"], *([*ssh, cfg.hostname(h), "true"] for h in cfg.login_hosts[1:])]
    # The jump host answering "keyboard-interactive" after the key proves its sshd and the key both work.
    return [[*ssh, "-o", "PreferredAuthentications=publickey", "jump", "true"],
            daemons.in_host(cfg.netns("jump"), None, [*ssh, "-o", "ProxyJump=none", "login", "true"]),
            daemons.in_host(cfg.netns("login"), None, [*ssh, "-o", "ProxyJump=none", "compute", "true"])]


def _wait_for_chain(cfg: SandboxConfig, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for argv in _chain_checks(cfg):
        while True:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
            if proc.returncode == 0 or "Permission denied (keyboard-interactive)" in proc.stderr:
                break
            if time.monotonic() > deadline:
                raise LabError(f"the ssh chain to compute did not come up: {proc.stderr.strip()} "
                               f"(logs in {cfg.log_dir}).")
            time.sleep(0.3)


def slurm_env(cfg: SandboxConfig) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(cfg.slurm_conf)}


def on_login(cfg: SandboxConfig, argv: list[str]) -> list[str]:
    return daemons.in_host(cfg.netns("login"), None, argv)


def _wait_for_node(cfg: SandboxConfig, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    argv = on_login(cfg, ["sinfo", "-h", "-N", "-o", "%t"])
    state = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(argv, capture_output=True, text=True, env=slurm_env(cfg), check=False)
        states = set(proc.stdout.split())
        state = " ".join(sorted(states)) or proc.stderr.strip()
        if states and states <= {"idle", "mix", "alloc"}:
            return
        time.sleep(0.5)
    raise LabError(f"the compute node did not become idle in Slurm (last state: {state or 'none'}); "
                   f"see {cfg.log_dir}/slurmd.log and slurmctld.log.")


def down(cfg: SandboxConfig, echo: Echo = _log.info) -> None:
    """Take down what ``up`` made -- by its record in the sandbox directory: a directory without one is
    refused whole (``--dir /`` removes nothing), and the user goes only if ``up`` made it."""
    require_root()
    if cfg.path.exists() and not cfg.state_file.exists():
        raise LabError(f"sandbox.dir {cfg.path} was not made by `inv sandbox.up` (no {cfg.state_file.name} in it): "
                       "nothing was removed.")
    why = file_trust.untrusted_because(cfg.path, owners={file_trust.ROOT})
    if why:  # its pidfiles say what to kill: another user's would choose for root
        raise LabError(f"sandbox.dir {cfg.path}: {why}: nothing was stopped or removed.")
    user_made = _user_made(cfg)
    cfg = recorded(cfg)
    for name in cluster.daemon_pidfiles(cfg):
        daemons.stop(cfg.run_dir / f"{name}.pid")
    # Whatever still lives in our namespaces (jobs, sessions, forwards) was started by the sandbox.
    for pid in network.pids(cfg):
        daemons.terminate(pid, grace=2)
    network.down(cfg)
    cluster.remove_mfa(cfg)
    if user_made and not cluster.remove_user(cfg):
        # Kept with its record, so that `down` run again (once they have ended) removes it.
        raise LabError(f"user {cfg.username} still runs processes outside the sandbox (`ps -u {cfg.username}`), so "
                       f"it was not removed: end them, then run `inv sandbox.down` again.")
    if cfg.path.exists():
        shutil.rmtree(cfg.path)
    echo(f"sandbox {cfg.name} is down")
