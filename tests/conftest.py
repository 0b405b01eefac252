"""Shared fixtures: the test sandbox, brought up once per session and always taken down.

The test sandbox has its own name, range and directory, so it runs beside a sandbox a developer has up.
Where a sandbox cannot run (not root, no network namespaces) its tests are skipped on a developer's
machine and *fail* under CI=true: CI must never go green without having run them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabfile_lib import LabError, sandbox
from fabfile_lib.sandbox import SandboxConfig

# FLTEST_NAME and FLTEST_SUBNET give a second suite its own sandbox while another one runs.
_NAME = os.environ.get("FLTEST_NAME", "fltest")
TEST_SANDBOX = SandboxConfig(name=_NAME, subnet=os.environ.get("FLTEST_SUBNET", "10.251.0.0/24"),
                             dir=f"/var/tmp/fabfile-lab/{_NAME}")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The sandbox tests share one sandbox (one per session, brought up once): with pytest-xdist they all
    run in one worker, in order, while the other tests spread over the workers a module at a time (what a
    module caches, it computes once)."""
    for item in items:
        group = "sandbox" if item.get_closest_marker("sandbox") else item.nodeid.partition("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


def sandbox_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the sandbox needs root"
    if shutil.which("ip") is None:
        return "iproute2 is missing"
    if subprocess.run(["ip", "netns", "list"], capture_output=True, check=False).returncode != 0:
        return "network namespaces are unavailable"
    return None


def require_sandbox() -> None:
    reason = sandbox_unavailable()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"sandbox test cannot run under CI: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def sandbox_up(cfg: SandboxConfig):
    """A sandbox for the duration of the ``with``, taken down afterwards even if bringing it up failed."""
    require_sandbox()
    try:
        sandbox.up(cfg, echo=lambda _msg: None)
        yield cfg
    finally:
        sandbox.down(cfg, echo=lambda _msg: None)


@pytest.fixture(scope="session")
def sbx(tmp_path_factory) -> SandboxConfig:
    with sandbox_up(TEST_SANDBOX) as cfg:
        yield cfg
        # after every test's own cleanup: what none of them owned up to (of this session: a second suite
        # may run beside it, FLTEST_NAME)
        left = left_anywhere(cfg, tmp_path_factory.getbasetemp())
        assert not left, f"left behind by the session: {'; '.join(left)}"


def left_anywhere(cfg: SandboxConfig, base: Path) -> list[str]:
    """Whatever a lab leaves, from any test of the session: jobs, lab directories, socket directories on the
    hosts' disks, and watchers of the state directories under the session's ``base``."""
    with contextlib.suppress(AssertionError):  # cancelled jobs show as completing (CG) for a few seconds
        wait_for(lambda: not ssh(cfg, "login", f"squeue -h -u {cfg.username} -o %i").stdout.split(), timeout=30)
    left = []
    jobs = ssh(cfg, "login", f"squeue -h -u {cfg.username} -o '%i %j %T'").stdout.strip()
    if jobs:
        left.append(f"jobs {jobs!r}")
    remote = cfg.home / ".fabfile-lab"
    dirs = sorted(remote.glob("*-*")) if remote.exists() else []
    if dirs:  # with what each holds, and when it was last written: which end of the lab failed to tidy
        left.append("lab directories " + ", ".join(
            f"{d.name} ({' '.join(sorted(f.name for f in d.iterdir()))}; {time.time() - d.stat().st_mtime:.0f} s ago)"
            for d in dirs))
    sockets = _socket_dirs(cfg)
    if sockets:
        left.append(f"socket directories {[str(p) for p in sockets]}")
    with contextlib.suppress(AssertionError):  # sessions that just closed are still ending (or being reaped)
        wait_for(lambda: not _live_processes(cfg), timeout=10)
    procs = _live_processes(cfg)
    if procs:
        left.append(f"processes of {cfg.username}: {procs!r}")
    def watchers() -> list[str]:
        return [p.parent.name for p in Path("/proc").glob("[0-9]*/cmdline") if b"fabfile_lib.watcher" in
                read_bytes(p) and str(base).encode() in read_bytes(p)]

    from fabfile_lib.watcher import AHEAD  # one started ahead of a start that failed ends by itself by then

    with contextlib.suppress(AssertionError):
        wait_for(lambda: not watchers(), timeout=AHEAD + 5)
    if watchers():
        left.append(f"watcher processes {watchers()}")
    return left


def _live_processes(cfg: SandboxConfig) -> str:
    """The cluster user's processes that still run (zombies left out: they have ended)."""
    out = subprocess.run(["ps", "-u", cfg.username, "-o", "pid=,stat=,etimes=,args="], capture_output=True,
                         text=True, check=False).stdout
    return "\n".join(line.strip() for line in out.splitlines() if line.split()[1:2] and
                     not line.split()[1].startswith("Z"))


def read_bytes(path: Path) -> bytes:
    """A file's bytes, or b"" where it is gone (a /proc entry of a process that ended meanwhile)."""
    try:
        return path.read_bytes()
    except OSError:
        return b""


def fake_browser(where: Path) -> tuple[Path, Path]:
    """A BROWSER that records what the tool asks it to open: (the program, the file it writes)."""
    seen, fake = where / "opened", where / "browser"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" > {seen}\n")
    fake.chmod(0o755)
    return fake, seen


def start_for_browser(cli: LabCli, name: str, where: Path) -> tuple[dict, str]:
    """``lab.start --detach`` with a fake browser: the lab's record and the page the tool opened (its
    private redirect page, which holds the token; the browser's argv never does)."""
    fake, seen = fake_browser(where)
    proc = cli("lab.start", "--name", name, "--detach", env={"BROWSER": str(fake)})
    assert proc.returncode == 0, proc.stderr
    opened = seen.read_text().strip()
    assert opened.startswith("file://") and cli.record(name)["token"] not in opened  # the private page
    return cli.record(name), opened


def ssh(cfg: SandboxConfig, host: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", str(cfg.ssh_config), host, command],
                          capture_output=True, text=True, timeout=timeout, check=False)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The CLI failed the way a user should see it: exit != 0, one stderr line `error: ...`, no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


_TEST_STARTED = [0.0]


@pytest.fixture(autouse=True)
def _test_started() -> None:
    """When this test began: what an earlier test left behind fails that test, not every later one."""
    _TEST_STARTED[0] = time.time()


def assert_nothing_left(sbx: SandboxConfig, cli: LabCli | None = None, name: str = "") -> None:
    """No job of the cluster user submitted during this test in squeue; no local record and no lab
    directory on the cluster -- of lab ``name``, or of any lab when no name is given."""
    # A cancelled job may show as completing (CG) for a few seconds while Slurm ends its processes.
    wait_for(lambda: not _jobs_since(sbx, _TEST_STARTED[0]), timeout=30, step=1)
    if not name:  # nor the private socket directories on the hosts' own disks (one /tmp in the sandbox)
        wait_for(lambda: not _socket_dirs(sbx, _TEST_STARTED[0]), timeout=15, step=0.5)
    remote = sbx.home / ".fabfile-lab"
    left = [p.name for p in remote.glob(f"{name}-*" if name else "*-*") if _since(p, _TEST_STARTED[0])] \
        if remote.exists() else []
    assert not left, f"lab directories left on the cluster: {left}"
    if cli is not None:
        labs = cli.state_dir / "labs"
        assert not list(labs.glob(f"{name}.json" if name else "*.json")) if labs.exists() else True


def _since(path: Path, since: float) -> bool:
    """Whether ``path`` was made (or changed) at ``since`` or later: what this test left, not an earlier one."""
    try:
        return path.lstat().st_mtime >= int(since)
    except OSError:
        return False  # removed meanwhile


def _jobs_since(sbx: SandboxConfig, since: float) -> list[str]:
    """The cluster user's jobs in squeue submitted at ``since`` or later (Slurm's clock is this machine's,
    to the second)."""
    out = ssh(sbx, "login", f"squeue -h -u {sbx.username} -o '%i %V'").stdout
    first = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(int(since)))
    return [line for line in out.splitlines() if line.split() and line.split()[-1] >= first]


def _socket_dirs(sbx: SandboxConfig, since: float = 0.0) -> list[Path]:
    uid = sbx.home.stat().st_uid
    found = []
    for path in [*Path("/tmp").glob("fl-*"), *Path("/tmp").glob("flr-*")]:
        with contextlib.suppress(OSError):  # removed meanwhile
            info = path.lstat()
            if info.st_uid == uid and info.st_mtime >= int(since):
                found.append(path)
    return found


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser test cannot run under CI: {what} is missing (tests/run installs it)")
    pytest.skip(f"{what} is missing")


@pytest.fixture(scope="module")
def chromium():
    """The distribution's Chromium, headless, driven by Playwright (pip); it downloads no browser."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright (pip install playwright)")
    if not CHROMIUM:
        _missing("Chromium (apt install chromium)")
    with sync_playwright() as driver:
        # As root, Chromium's own sandbox cannot start; the pages it renders are the sandbox's own labs.
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield browser
        browser.close()


class LabCli:
    """Runs ``inv -f CONFIG lab.*`` as a user would, with a config and state directory of its own."""

    def __init__(self, cfg: SandboxConfig, tmp_path, **lab):
        import yaml

        self.sbx = cfg
        self.state_dir = Path(lab.get("state_dir") or tmp_path / "state")  # another state dir: another laptop
        self.lab = {
            "ssh_config": str(cfg.ssh_config),
            "login": "login",
            "sbatch": {"partition": "debug", "time": "00:30:00"},
            "setup": [f"source {cfg.venv}/bin/activate"],
            "state_dir": str(self.state_dir),
            "wait_timeout": 60,
            **lab,
        }
        self.path = tmp_path / f"lab-{id(self)}.yaml"
        self.path.write_text(yaml.safe_dump({"lab": self.lab}))

    def __call__(self, *args: str, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["python3", "-m", "invoke", "-f", str(self.path), *args], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})

    def record(self, name: str) -> dict:
        import json

        return json.loads((self.state_dir / "labs" / f"{name}.json").read_text())

    def cleanup(self) -> None:
        from fabfile_lib import lab, master, state
        from fabfile_lib.hops import Hops
        from fabfile_lib.settings import LabSettings

        if (self.state_dir / "labs").exists():
            for name in state.names(self.state_dir):
                record = state.load(self.state_dir, name)
                settings = lab.settings_for(record, state_dir=str(self.state_dir))
                with Hops(settings) as hops:  # may log in again (no terminal: never asks)
                    lab.cancel(settings, record, hops)
        self._end_watcher()
        try:
            settings = LabSettings.from_config(self.lab)
        except LabError:
            return  # a test of a bad config: nothing was started
        if settings.transport != "paramiko":
            for kept in master.masters(settings):
                kept.close()


    def _end_watcher(self) -> None:
        """The watcher ends by itself once nothing is held; one that has not within 5 s (a test that
        failed half-way) is ended by its recorded pid and start time."""
        from fabfile_lib import watcher
        from fabfile_lib.procs import alive, terminate

        known = watcher.recorded(self.state_dir)
        if known is None:
            return
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not alive(*known), timeout=5, step=0.1)
        if alive(*known):
            terminate(known[0], started=known[1])


def forward_ended(cli: LabCli, name: str) -> bool:
    """Lab ``name``'s background forwards are closed: the watcher has let go of it (or is gone)."""
    import json

    from fabfile_lib.procs import alive

    path = cli.state_dir / "labs" / f"{name}.json"
    if not path.exists():
        return True
    rec = json.loads(path.read_text())
    return not alive(rec.get("forward_pid", 0), rec.get("forward_started", ""))


@pytest.fixture
def lab_cli(sbx, tmp_path):
    """A factory of LabCli objects; every lab they leave is cancelled after the test."""
    made: list[LabCli] = []

    def make(**lab) -> LabCli:
        cli = LabCli(sbx, tmp_path, **lab)
        made.append(cli)
        return cli

    yield make
    for cli in made:
        cli.cleanup()
    ssh(sbx, "login", f"scancel -u {sbx.username}")


def sdiag(cfg: SandboxConfig, *args: str) -> str:
    """``sdiag`` on the login node, as root (it counts slurmctld's RPCs by type and by user)."""
    argv = ["nsenter", f"--net=/run/netns/{cfg.netns('login')}", "sdiag", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, "SLURM_CONF": str(cfg.slurm_conf)})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def user_rpcs(cfg: SandboxConfig) -> int:
    """RPCs slurmctld counted for the cluster user since the last ``sdiag --reset``."""
    import re

    match = re.search(rf"^\s*{re.escape(cfg.username)}\s+\(\s*\d+\)\s+count:(\d+)", sdiag(cfg), re.M)
    return int(match.group(1)) if match else 0


def start_side_by_side(cli: LabCli, names: dict[str, str], *, beside: tuple[LabCli, dict[str, str]] | None = None
                       ) -> dict[str, dict]:
    """``lab.start --detach`` of one lab per (name, mode), all at once -- and of ``beside``'s labs (another
    configuration: its own state directory and watcher) at the same time; their records."""
    groups = [(cli, names), *([beside] if beside else [])]
    procs = {(c, name): subprocess.Popen(["python3", "-m", "invoke", "-f", str(c.path), "lab.start", "--name", name,
                                          "--via", via, "--detach", "--no-browser"], cwd=REPO,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
             for c, group in groups for name, via in group.items()}
    for (_, name), proc in procs.items():
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{name}: {err}"
    return {name: c.record(name) for c, name in procs}


def wait_for(predicate, timeout: float, step: float = 0.5) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    import time

    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(step)
    return time.monotonic() - started


def answers(port: int) -> bool:
    """Jupyter's /api answers on the local port (no token sent)."""
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/api", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def throwaway_user(prefix: str = "flo") -> Iterator[str]:
    """A local account of its own (no home), removed afterwards: another user of the laptop or the cluster."""
    account = f"{prefix}{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", account], check=True)
    try:
        yield account
    finally:
        subprocess.run(["userdel", account], check=False)
