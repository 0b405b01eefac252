"""A jump host that demands a second factor (publickey, then a TOTP code through PAM), as most sites do.

The prompts are answered through a pty, as a user would at a terminal, and counted: with the OpenSSH
transport one code must serve a whole day of separate `inv` processes; with Paramiko, a foreground task
asks once per hop, and a background forward, which cannot ask, is refused in one line.
"""

from __future__ import annotations

import json
import re
import signal
import time

import pexpect
import pyotp
import pytest
import requests

from fabfile_lib.sandbox import SandboxConfig
from fabfile_lib.sandbox.lifecycle import on_login, slurm_env

from .conftest import REPO, LabCli, sandbox_up

pytestmark = pytest.mark.sandbox

MFA_SANDBOX = SandboxConfig(name="flmfa", subnet="10.251.2.0/24", dir="/var/tmp/fabfile-lab/flmfa", mfa=True)
PROMPT = r"(?i)one-time password[^:]*: ?"


class Codes:
    """TOTP codes from the sandbox's known secret; never the same 30 s step twice (PAM refuses replays)."""

    def __init__(self, cfg: SandboxConfig):
        self.totp = pyotp.TOTP(cfg.totp_secret.read_text().strip())
        self.last_step = 0

    def next(self) -> str:
        step = max(int(time.time() // 30), self.last_step + 1)
        self.last_step = step
        return self.totp.at(step * 30)


@pytest.fixture(scope="module")
def mfa():
    with sandbox_up(MFA_SANDBOX) as cfg:
        yield cfg, Codes(cfg)
    assert not MFA_SANDBOX.pam_file.exists()


class PtyCli(LabCli):
    """`inv -f CONFIG ...` on a pseudo-terminal, answering (and counting) every code prompt."""

    def __init__(self, cfg, tmp_path, codes: Codes, **lab):
        super().__init__(cfg, tmp_path, **lab)
        self.codes = codes
        self.prompts = 0

    def tty(self, *args: str, timeout: float = 180) -> tuple[int, str]:
        child = pexpect.spawn("python3", ["-m", "invoke", "-f", str(self.path), *args], cwd=REPO,
                              encoding="utf-8", timeout=timeout)
        out = ""
        while child.expect([PROMPT, pexpect.EOF]) == 0:
            out += child.before + child.after
            self.prompts += 1
            child.sendline(self.codes.next())
        out += child.before
        child.close()
        return child.exitstatus if child.exitstatus is not None else -1, out

    def cleanup(self) -> None:
        from fabfile_lib import master
        from fabfile_lib.settings import LabSettings

        argv = on_login(self.sbx, ["scancel", "-u", self.sbx.username])
        import subprocess

        subprocess.run(argv, env=slurm_env(self.sbx), capture_output=True, check=False)
        settings = LabSettings.from_config(self.lab)
        if settings.transport != "paramiko":
            master.plan(settings).close()
        for rec in (self.state_dir / "labs").glob("*.json") if (self.state_dir / "labs").exists() else []:
            pid = json.loads(rec.read_text()).get("forward_pid")
            if pid:
                from fabfile_lib.procs import terminate

                terminate(pid)


@pytest.fixture
def pty_cli(mfa, tmp_path):
    cfg, codes = mfa
    made: list[PtyCli] = []

    def make(**lab) -> PtyCli:
        cli = PtyCli(cfg, tmp_path, codes, **lab)
        made.append(cli)
        return cli

    yield make
    for cli in made:
        cli.cleanup()


def _url(out: str) -> str:
    match = re.search(r"JupyterLab: (http://127\.0\.0\.1:\d+/lab\?token=\S+)", out)
    assert match, out
    return match.group(1).replace("/lab?", "/api/status?")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).status_code == 200
    except requests.ConnectionError:
        return False


def test_one_code_serves_a_day_of_separate_tasks(pty_cli):
    cli = pty_cli()
    code, out = cli.tty("lab.start", "--name", "day", "--detach", "--no-browser")
    assert code == 0, out
    assert cli.prompts == 1
    url = _url(out)
    assert _answers(url)

    code, out = cli.tty("lab.status", "--name", "day")
    assert code == 0 and "running" in out, out
    assert _answers(url)
    code, out = cli.tty("lab.logs", "--name", "day")
    assert code == 0 and "fabfile-lab: job" in out, out
    assert _answers(url)
    code, out = cli.tty("lab.tunnel", "--name", "day", "--stop")
    assert code == 0, out
    assert not _answers(url)
    code, out = cli.tty("lab.tunnel", "--name", "day", "--detach", "--no-browser")
    assert code == 0, out
    assert _answers(_url(out))
    code, out = cli.tty("lab.cancel", "--name", "day")
    assert code == 0, out
    assert cli.prompts == 1, "every task after the first rode the kept login"

    code, out = cli.tty("lab.login")
    assert code == 0 and "already logged in" in out and cli.prompts == 1, out
    code, out = cli.tty("lab.logout")
    assert code == 0 and "logged out" in out, out
    code, out = cli.tty("lab.login")
    assert code == 0 and "logged in" in out, out
    assert cli.prompts == 2, "after lab.logout the next task asks again"


def test_paramiko_asks_once_in_the_foreground_and_refuses_a_background_prompt(pty_cli):
    cli = pty_cli(transport="paramiko")
    child = pexpect.spawn("python3", ["-m", "invoke", "-f", str(cli.path), "lab.start", "--name", "pm",
                                      "--no-browser"], cwd=REPO, encoding="utf-8", timeout=120)
    out = ""
    while child.expect([PROMPT, r"JupyterLab: http\S+"]) == 0:
        out += child.before
        cli.prompts += 1
        child.sendline(cli.codes.next())
    url = child.after.split("JupyterLab: ")[1].replace("/lab?", "/api/status?")
    assert cli.prompts == 1
    assert _answers(url)
    child.kill(signal.SIGINT)
    child.expect(pexpect.EOF)
    child.close()

    code, out = cli.tty("lab.tunnel", "--name", "pm", "--detach", "--no-browser")
    lines = [ln for ln in out.splitlines() if ln.strip() and not re.search(PROMPT, ln)]
    assert code != 0 and "Traceback" not in out
    assert len(lines) == 1 and lines[0].startswith("error: ") and "second factor" in lines[0], out
    assert "foreground" in lines[0]
