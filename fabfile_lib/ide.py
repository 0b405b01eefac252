"""ssh config entries that let an IDE (VS Code Remote-SSH, PyCharm, plain ``ssh``) reach a lab's node.

The entries are self-contained: every hop is written out as ``ssh -G`` resolves it from the lab's ssh
config (which need not be ``~/.ssh/config``), chained with ``ProxyJump``. The login node's entry shares
the tool's ControlPath, so an IDE rides the login the tool keeps (no second factor again) and opens one
like it when there is none. One file per lab in ``STATE/ssh/``: a single ``Include`` line covers them all.
"""

from __future__ import annotations

from pathlib import Path

from . import commands, master_address, openssh, state, untrusted
from .errors import LabError
from .settings import LabSettings
from .state import LabRecord

_MAX_CHAIN = 6  # ProxyJump hops followed before the chain is called circular


def host_alias(name: str) -> str:
    return f"fabfile-lab-{name}"


def include_line(state_dir: Path) -> str:
    return f"Include {state.ssh_dir(state_dir)}/*.conf"


def _values(opts: openssh.Options, key: str) -> list[str]:
    return [v for v in opts.get(key, []) if v and v.lower() != "none"]


def _entry(alias: str, opts: openssh.Options, extra: list[str]) -> list[str]:
    lines = [f"Host {alias}", f"    HostName {openssh.first(opts, 'hostname')}",
             f"    User {openssh.first(opts, 'user')}", f"    Port {openssh.first(opts, 'port', '22')}"]
    lines += [f"    IdentityFile {path}" for path in openssh.existing_files(_values(opts, "identityfile"))]
    if openssh.first(opts, "identitiesonly") == "yes":
        lines.append("    IdentitiesOnly yes")
    known = " ".join(_values(opts, "userknownhostsfile"))
    if known:
        lines.append(f"    UserKnownHostsFile {known}")
    strict = openssh.first(opts, "stricthostkeychecking")
    if strict in ("accept-new", "yes", "true"):
        lines.append(f"    StrictHostKeyChecking {strict}")
    return lines + [f"    {line}" for line in extra]


class _Chain:
    """Host entries for a hop and everything it jumps through, each named once."""

    def __init__(self, settings: LabSettings, prefix: str):
        self.settings, self.prefix = settings, prefix
        self.lines: list[str] = []
        self.names: dict[str, str] = {}

    def add(self, spec: str, extra: list[str], depth: int = 0, jump: str = "") -> str:
        if spec in self.names:
            return self.names[spec]
        if depth > _MAX_CHAIN:
            raise LabError(f"the ProxyJump chain of {self.settings.login!r} is longer than {_MAX_CHAIN} hops.")
        opts = openssh.effective(spec, self.settings.ssh_config_path, ["-J", jump] if jump else [])
        hops = [h for h in ",".join(_values(opts, "proxyjump")).split(",") if h]
        via = [self.add(h, [], depth + 1) for h in hops]
        alias = self.names[spec] = f"{self.prefix}-{len(self.names) + 1}"
        chain = [f"ProxyJump {','.join(via)}"] if via else \
            [f"ProxyCommand {c}" for c in _values(opts, "proxycommand")[:1]]
        self.lines += [*_entry(alias, opts, chain + extra), ""]
        return alias


def ssh_entries(settings: LabSettings, record: LabRecord) -> str:
    """The ssh config text for ``record``'s node: its hops, then ``Host fabfile-lab-NAME``."""
    if not record.node_addr:
        raise LabError(f"lab {record.name!r} has no node yet: `{commands.run('wait')} --name {record.name}` first.")
    if not untrusted.host(record.node_addr):  # it came from the cluster: never raw into an ssh config
        raise LabError(f"lab {record.name!r} names its node {record.node_addr[:60]!r}, which is not a host name "
                       "or an address: refusing to write it into an ssh config.")
    plan = master_address.describe(settings)  # the words only: nothing logs in here
    chain = _Chain(settings, f"fabfile-lab-{plan.key}")
    shared = [] if plan.user_managed else [f"ControlPath {plan.control_path}", "ControlMaster auto",
                                           f"ControlPersist {'no' if plan.persist == '0' else plan.persist}"]
    login = chain.add(settings.login, shared, jump=settings.jump)
    opts = openssh.effective(settings.login, settings.ssh_config_path, ["-J", settings.jump] if settings.jump else [])
    node = dict(opts)
    node["hostname"] = [record.node_addr]
    node["port"] = ["22"]
    node["stricthostkeychecking"] = ["accept-new" if settings.accept_new_host_keys else "yes"]
    head = [f"# Written by fabfile-lab for lab {record.name} (job {record.job_id}); removed by lab.cancel.", ""]
    return "\n".join(head + chain.lines + _entry(host_alias(record.name), node, [f"ProxyJump {login}"])) + "\n"


def write(settings: LabSettings, record: LabRecord) -> Path:
    """Write the lab's entries to ``STATE/ssh/NAME.conf`` (0600, directory 0700); return the path."""
    path = state.ssh_entry_path(settings.state_path, record.name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    state.write_private(path, ssh_entries(settings, record))
    return path
