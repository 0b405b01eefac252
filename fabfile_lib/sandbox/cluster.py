"""The cluster inside the sandbox: its user, keys, sshd per host, munge and Slurm.

Everything is configured from files under the sandbox directory. Nothing is written under /etc except
the cluster user's passwd entry (Slurm and sshd look users up there); its home lives in the sandbox.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pwd
import secrets
import stat
from pathlib import Path

from . import daemons
from .config import SandboxConfig
from .system import run

NO_STREAMLOCAL_PORT = 2222  # a second port of each login node's sshd, without stream-local forwarding
NO_FORWARDING_PORT = 2223  # a third, without any forwarding (AllowTcpForwarding and StreamLocal no)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    """A file of root's in the sandbox's directory (checked root's at ``up``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


# -- the cluster user -------------------------------------------------------------------------------

def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure_user(cfg: SandboxConfig) -> bool:
    """Create the cluster user (home in the sandbox) unless it exists; return True if we made it."""
    made = False
    if not user_exists(cfg.username):
        cfg.home.parent.mkdir(parents=True, exist_ok=True)
        run(["useradd", "--create-home", "--home-dir", str(cfg.home), "--shell", "/bin/bash",
             "--comment", f"fabfile-lab sandbox {cfg.name}", cfg.username])
        made = True
    # useradd leaves the account locked ("!"); sshd without PAM refuses locked accounts, "*" allows keys.
    run(["usermod", "-p", "*", cfg.username])
    return made


def remove_user(cfg: SandboxConfig) -> bool:
    """Remove the sandbox's user; False if it is still there (userdel refuses while processes run as it)."""
    if user_exists(cfg.username):
        run(["userdel", cfg.username], check=False)
    return not user_exists(cfg.username)


# -- keys -------------------------------------------------------------------------------------------

def _keygen(path: Path, comment: str) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return Path(f"{path}.pub").read_text().strip()


def host_key(cfg: SandboxConfig, host: str) -> Path:
    """A host's key; the login nodes share one, as sites behind one name do."""
    return cfg.path / "hosts" / ("login" if host.startswith("login") else host) / "ssh_host_ed25519_key"


def _known_names(cfg: SandboxConfig, host: str) -> str:
    names = [cfg.address(host)]
    if cfg.login_nodes > 1 and host.startswith("login"):
        names = [cfg.cluster_name, cfg.hostname(host), *names]
    return ",".join(names)


def ensure_keys(cfg: SandboxConfig) -> None:
    """Host keys, the laptop's key, the user's cluster-internal key, and the files that trust them."""
    public = {h: _keygen(host_key(cfg, h), f"{cfg.hostname(h)}") for h in cfg.hosts}
    laptop_pub = _keygen(cfg.identity, f"laptop@{cfg.name}")
    cfg.identity.parent.chmod(0o700)
    known = [f"{_known_names(cfg, h)} {' '.join(public[h].split()[:2])}" for h in cfg.hosts]
    _write(cfg.known_hosts, "\n".join(known) + "\n", 0o600)

    # The user's own key is made in the sandbox's (root's) directory and copied in: ssh-keygen would
    # follow a link the user left in ~/.ssh.
    user_key = cfg.path / "hosts" / "user" / "id_ed25519"
    user_pub = _keygen(user_key, f"{cfg.username}@{cfg.name}-cluster")
    # The reverse hop: a job on compute reaches the login node it was submitted from by its hostname
    # ($SLURM_SUBMIT_HOST).
    login_key = " ".join(public["login"].split()[:2])
    files = {
        "id_ed25519": user_key.read_text(), "id_ed25519.pub": user_pub + "\n",
        "authorized_keys": f"{laptop_pub}\n{user_pub}\n",
        "known_hosts": "".join(f"{cfg.hostname(h)},{cfg.addresses.from_compute(h)} {login_key}\n"
                               for h in cfg.login_hosts),
        "config": "".join(
            f"Host {cfg.hostname(h)}{' login' if h == 'login' else ''}\n"
            f"    HostName {cfg.addresses.from_compute(h)}\n"
            f"    HostKeyAlias {cfg.hostname(h)}\n"
            "    IdentityFile ~/.ssh/id_ed25519\n"
            "    StrictHostKeyChecking yes\n"
            "    BatchMode yes\n" for h in cfg.login_hosts)
        # The same login node as a site that forbids stream-local forwarding (lab.reverse_target).
        + "".join(f"Host {cfg.hostname('login')}-{alias}\n    HostName {cfg.addresses.from_compute('login')}\n"
                  f"    Port {port}\n    HostKeyAlias {cfg.hostname('login')}\n"
                  "    IdentityFile ~/.ssh/id_ed25519\n    StrictHostKeyChecking yes\n    BatchMode yes\n"
                  for alias, port in (("nostream", NO_STREAMLOCAL_PORT), ("noforward", NO_FORWARDING_PORT))),
    }
    write_in_home(cfg, ".ssh", files)
    cfg.home.chmod(0o700)


def write_in_home(cfg: SandboxConfig, subdir: str, files: dict[str, str]) -> None:
    """Write ``files`` (0600, the user's) into ``subdir`` (0700) of the cluster user's home, never through a
    link: the user owns that directory and may have left one there to a file of root's. Each file is made
    anew beside its name (O_EXCL, O_NOFOLLOW) and renamed over it, so a link is replaced, not followed."""
    entry = pwd.getpwnam(cfg.username)
    home = os.open(cfg.home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)  # its parent is root's sandbox dir
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(subdir, 0o700, dir_fd=home)
        where = os.open(subdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=home)
        try:
            os.fchown(where, entry.pw_uid, entry.pw_gid)
            os.fchmod(where, 0o700)
            for name, text in files.items():
                tmp = f".{name}.fabfile-lab-{secrets.token_hex(4)}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=where)
                with os.fdopen(fd, "w") as fh:
                    os.fchown(fh.fileno(), entry.pw_uid, entry.pw_gid)
                    fh.write(text)
                os.replace(tmp, name, src_dir_fd=where, dst_dir_fd=where)
        finally:
            os.close(where)
    finally:
        os.close(home)


# -- sshd -------------------------------------------------------------------------------------------

def ensure_mfa(cfg: SandboxConfig) -> None:
    """A TOTP secret (known: it is written into the sandbox directory), pam_oath's users file, the PAM
    service named after the sandbox, and the sshd link whose name selects that service."""
    mdir = cfg.totp_secret.parent
    mdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not cfg.totp_secret.exists():
        raw = secrets.token_bytes(20)
        _write(cfg.totp_secret, base64.b32encode(raw).decode() + "\n", 0o600)
        _write(cfg.oath_users, f"HOTP/T30/6 {cfg.username} - {raw.hex()}\n", 0o600)
    _write(cfg.pam_file, (
        f"# fabfile-lab sandbox {cfg.name}: the jump host's second factor. Removed by `inv sandbox.down`.\n"
        f"auth     required pam_oath.so usersfile={cfg.oath_users} window=4 digits=6\n"
        "account  required pam_permit.so\n"
        "session  required pam_permit.so\n"
        "password required pam_deny.so\n"), 0o644)
    cfg.sshd_link.parent.mkdir(parents=True, exist_ok=True)
    if not cfg.sshd_link.is_symlink():
        cfg.sshd_link.symlink_to("/usr/sbin/sshd")


def remove_mfa(cfg: SandboxConfig) -> None:
    cfg.pam_file.unlink(missing_ok=True)


def sshd_config(cfg: SandboxConfig, host: str) -> str:
    second_factor = cfg.mfa and host == "jump"
    lines = [
        "Port 22",
        "ListenAddress 0.0.0.0",
        f"HostKey {host_key(cfg, host)}",
        f"PidFile {cfg.run_dir / f'sshd-{host}.sshd.pid'}",
        f"UsePAM {'yes' if second_factor else 'no'}",
        "PasswordAuthentication no",
        f"KbdInteractiveAuthentication {'yes' if second_factor else 'no'}",
        *(["AuthenticationMethods publickey,keyboard-interactive"] if second_factor else []),
        "PermitRootLogin no",
        "PubkeyAuthentication yes",
        "AuthorizedKeysFile .ssh/authorized_keys",
        f"AllowUsers {cfg.username}",
        "AllowTcpForwarding yes",
        "X11Forwarding no",
        "PrintMotd no",
        "MaxStartups 64:30:128",
        "MaxSessions 64",
        "Subsystem sftp internal-sftp",
    ]
    if host != "jump":
        lines.append(f"SetEnv SLURM_CONF={cfg.slurm_conf}")
    if host.startswith("login"):
        # Port 2222 is the login node of a site that forbids stream-local (Unix socket) forwarding; port
        # 2223, of a site that forbids forwarding altogether (Jean Zay has it off).
        lines[1:1] = [f"Port {NO_STREAMLOCAL_PORT}", f"Port {NO_FORWARDING_PORT}"]
        lines += [f"Match LocalPort {NO_STREAMLOCAL_PORT}", "    AllowStreamLocalForwarding no",
                  f"Match LocalPort {NO_FORWARDING_PORT}", "    AllowTcpForwarding no",
                  "    AllowStreamLocalForwarding no"]
    return "\n".join(lines) + "\n"


def start_sshd(cfg: SandboxConfig, host: str) -> None:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    conf = cfg.path / "hosts" / host / "sshd_config"
    _write(conf, sshd_config(cfg, host), 0o600)
    binary = str(cfg.sshd_link) if cfg.mfa and host == "jump" else "/usr/sbin/sshd"
    argv = [binary, "-D", "-f", str(conf), "-E", str(cfg.log_dir / f"sshd-{host}.log")]
    run([binary, "-t", "-f", str(conf)])
    daemons.start(daemons.in_host(cfg.netns(host), cfg.hostname(host), argv),
                  pidfile=cfg.run_dir / f"sshd-{host}.pid", logfile=cfg.log_dir / f"sshd-{host}.out")


# -- munge and Slurm --------------------------------------------------------------------------------

def start_munge(cfg: SandboxConfig) -> None:
    """One munged serves every host: its socket is a file, and the hosts share the filesystem."""
    mdir = cfg.munge_socket.parent
    mdir.mkdir(mode=0o755, parents=True, exist_ok=True)
    key = mdir / "munge.key"
    if not key.exists():
        key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    argv = ["munged", "--foreground", "--force", f"--socket={cfg.munge_socket}", f"--key-file={key}",
            f"--log-file={cfg.log_dir / 'munged.log'}", f"--pid-file={mdir / 'munged.pid'}",
            f"--seed-file={mdir / 'munged.seed'}"]
    daemons.start(argv, pidfile=cfg.run_dir / "munged.pid", logfile=cfg.log_dir / "munged.out")


def slurm_conf(cfg: SandboxConfig) -> str:
    sdir = cfg.slurm_conf.parent
    node = cfg.hostname("compute")
    return "\n".join([
        f"ClusterName={cfg.name}",
        f"SlurmctldHost={cfg.hostname('login')}({cfg.addresses.login_from_compute})",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={cfg.munge_socket}",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={sdir / 'state'}",
        f"SlurmdSpoolDir={sdir / 'spool'}",
        f"SlurmctldPidFile={cfg.run_dir / 'slurmctld.slurm.pid'}",
        f"SlurmdPidFile={cfg.run_dir / 'slurmd.slurm.pid'}",
        f"SlurmctldLogFile={cfg.log_dir / 'slurmctld.log'}",
        f"SlurmdLogFile={cfg.log_dir / 'slurmd.log'}",
        f"PlugStackConfig={sdir / 'plugstack.conf'}",
        # No cgroups inside the namespaces: track processes by /proc, bind no tasks.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "MpiDefault=none",
        "ReturnToService=2",
        "SlurmdTimeout=60",
        "KillWait=5",
        "MinJobAge=60",
        "MailProg=/bin/true",
        # More CPUs than the machine has, so that several labs (one core each) run at once, as on a real
        # node; config_overrides makes slurmd take the configured count instead of draining the node.
        "SlurmdParameters=config_overrides",
        # Two GPUs of a made-up type, so that --gpus is a real allocation (see gres_conf).
        "GresTypes=gpu",
        f"NodeName={node} NodeAddr={cfg.address('compute')} CPUs={max(12, os.cpu_count() or 1)} "
        f"RealMemory=1024 Gres=gpu:{GPU_TYPE}:{len(GPU_DEVICES)} State=UNKNOWN",
        f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        f"PartitionName=long Nodes={node} Default=NO MaxTime=INFINITE State=UP",
    ]) + "\n"


GPU_TYPE = "sandbox"
GPU_DEVICES = ("gpu0", "gpu1")


def gres_conf(cfg: SandboxConfig) -> str:
    """The node's GPUs: Slurm drops a GPU without ``File=`` ("Removing file-less GPU") and wants character
    devices there, so each is a node like /dev/null's (``gpu_devices``) in the sandbox's directory."""
    files = ",".join(str(cfg.path / "dev" / name) for name in GPU_DEVICES)
    return f"NodeName={cfg.hostname('compute')} Name=gpu Type={GPU_TYPE} File={files}\n"


def gpu_devices(cfg: SandboxConfig) -> None:
    where = cfg.path / "dev"
    where.mkdir(mode=0o755, parents=True, exist_ok=True)
    for name in GPU_DEVICES:
        if not (where / name).exists():
            os.mknod(where / name, 0o666 | stat.S_IFCHR, os.makedev(1, 3))


def start_slurm(cfg: SandboxConfig) -> None:
    sdir = cfg.slurm_conf.parent
    for sub in ("state", "spool"):
        (sdir / sub).mkdir(parents=True, exist_ok=True)
    _write(cfg.slurm_conf, slurm_conf(cfg))
    gpu_devices(cfg)
    _write(sdir / "gres.conf", gres_conf(cfg))
    _write(sdir / "plugstack.conf", "")
    _write(sdir / "cgroup.conf", "CgroupPlugin=autodetect\nIgnoreSystemd=yes\n")
    env = {**os.environ, "SLURM_CONF": str(cfg.slurm_conf)}
    ctld = ["slurmctld", "-D", "-f", str(cfg.slurm_conf)]
    daemons.start(daemons.in_host(cfg.netns("login"), cfg.hostname("login"), ctld), env=env,
                  pidfile=cfg.run_dir / "slurmctld.pid", logfile=cfg.log_dir / "slurmctld.out")
    slurmd = ["slurmd", "-D", "-f", str(cfg.slurm_conf), "-N", cfg.hostname("compute")]
    daemons.start(daemons.in_host(cfg.netns("compute"), cfg.hostname("compute"), slurmd), env=env,
                  pidfile=cfg.run_dir / "slurmd.pid", logfile=cfg.log_dir / "slurmd.out")


def daemon_pidfiles(cfg: SandboxConfig) -> tuple[str, ...]:
    """The names of the pidfiles of every daemon the sandbox runs."""
    return ("slurmd", "slurmctld", *(f"sshd-{h}" for h in cfg.hosts), "munged")
