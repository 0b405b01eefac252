"""``inv sandbox.*``: bring the cluster in miniature up, take it down, show its state."""

from __future__ import annotations

import dataclasses
import json

from invoke import Collection, task

from .. import sandbox
from ..sandbox import SandboxConfig
from ..settings import config_defaults
from ._errors import user_errors

_DEFAULT = config_defaults(SandboxConfig)
HELP = {
    "name": f"sandbox name: prefixes namespaces, hostnames and the cluster user (default: {_DEFAULT['name']})",
    "subnet": f"private IPv4 range for the sandbox hosts (default: {_DEFAULT['subnet']})",
    "dir": "directory holding everything the sandbox makes (default: /var/tmp/fabfile-lab/NAME)",
}


def _config(c, name: str | None, subnet: str | None, dir: str | None) -> SandboxConfig:
    data = dict(c.config.get("sandbox", {}))
    overrides = {"name": name, "subnet": subnet, "dir": dir}
    data.update({k: v for k, v in overrides.items() if v})
    return SandboxConfig.from_mapping(data)


@task(help={**HELP, "mfa": "the jump host asks for a TOTP code after the key (a second factor, via PAM)",
            "login_nodes": "2: a second login node with the first's host key; `login` then reaches each in turn "
                           "(default: 1)"})
@user_errors
def up(c, name=None, subnet=None, dir=None, mfa=False, login_nodes=None):
    """Bring the sandbox up (idempotent): namespaces, sshd, munge, Slurm, JupyterLab env."""
    cfg = _config(c, name, subnet, dir)
    if mfa:
        cfg = dataclasses.replace(cfg, mfa=True)
    if login_nodes is not None:
        cfg = SandboxConfig.from_mapping({**dataclasses.asdict(cfg), "login_nodes": login_nodes})
    st = sandbox.up(cfg, echo=print)
    hosts = ", ".join(f"{host} {info.address}" for host, info in st.hosts.items())
    print(f"sandbox {st.name} is up: {hosts}, user {st.user}")
    print(f"  ssh -F {st.ssh_config} compute hostname")
    print(f"  inv -f {st.lab_config} lab.start")
    if st.mfa:
        print(f"  TOTP secret (base32) in {st.totp_secret}; a code: oathtool --totp -b \"$(cat {st.totp_secret})\"")


@task(help=HELP)
@user_errors
def down(c, name=None, subnet=None, dir=None):
    """Take the sandbox down: processes, namespaces, links, route, user and directory."""
    sandbox.down(_config(c, name, subnet, dir), echo=print)


@task(help={**HELP, "json": "print the status as a JSON object"})
@user_errors
def status(c, name=None, subnet=None, dir=None, json_=False):
    """Show whether the sandbox is up, its hosts' addresses and its ssh config."""
    st = sandbox.status(_config(c, name, subnet, dir))
    if json_:
        print(json.dumps(st.to_dict(), indent=2))
        return
    print(f"sandbox {st.name}: {'up' if st.up else 'down'} (dir {st.dir}, user {st.user})")
    for host, info in st.hosts.items():
        print(f"  {host:8} {info.address:15} {info.hostname}")
    print(f"  ssh config: {st.ssh_config}")


ns = Collection("sandbox", up, down, status)
ns.configure({"sandbox": _DEFAULT})
