"""The tool as its user gets it and sees it, against the sandbox.

The ``fabfile-lab`` command as a researcher installs it: a wheel built from the repository, installed (not
editable) into a fresh venv outside it, run from a directory with no tasks.py.

JupyterLab in a real browser: the distribution's Chromium, driven headless by Playwright, through the
tool's own forwards, in each mode.

The page is opened where the tool opens it (the private redirect page it hands the browser). Then a
notebook runs code on the compute node, a terminal runs ``hostname``, 20 MB go up through the file
browser, and the page lives through a reset of the hop under it. A lab with a 3-minute limit, started
first and left open beside the others (and beside the installed command's tests), is warned about and then seen
gone from its page. A failing step
leaves a screenshot and the browser's console log under the test's temporary directory, named in the
failure message. ``-m "not browser"`` skips these where no Chromium is installed; under CI=true a missing
browser is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
import requests

from fabfile_lib.sandbox import SandboxConfig

from .conftest import REPO, LabCli, answers, forward_ended, ssh, start_for_browser, wait_for

pytestmark = pytest.mark.sandbox

UPLOAD_BYTES = 20_000_000
WALLTIME = "00:03:00"


class Page:
    """One browser page and what it said on its console, with the evidence a failure leaves behind."""

    def __init__(self, browser, where: Path):
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.where = where
        self.console: list[str] = []
        self.page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))

    @contextlib.contextmanager
    def evidence(self, step: str) -> Iterator[None]:
        """A failure inside is re-raised naming the screenshot and console log it saved."""
        try:
            yield
        except Exception as exc:
            stem = re.sub(r"[^A-Za-z0-9]+", "-", step).strip("-")
            shot, log = self.where / f"{stem}.png", self.where / f"{stem}.console.log"
            with contextlib.suppress(Exception):
                self.page.screenshot(path=str(shot), full_page=True)
            log.write_text("\n".join(self.console))
            raise AssertionError(f"{step}: {exc}\n  screenshot: {shot}\n  console log: {log}") from exc

    def close(self) -> None:
        self.context.close()

    # -- JupyterLab ------------------------------------------------------------------------------
    def open_lab(self, url: str) -> None:
        self.page.goto(url)
        self.page.locator('[data-command="launcher:create"]').first.wait_for(timeout=90_000)

    def launcher(self):
        """A new launcher tab (a restored workspace may show none)."""
        self.page.locator('[data-command="launcher:create"]').first.click()
        launcher = self.page.locator(".jp-Launcher:visible")
        launcher.wait_for(timeout=30_000)
        return launcher

    def new_notebook(self) -> None:
        self.launcher().locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
        self.page.locator('.jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(
            timeout=90_000)

    def run_cell(self, code: str | None, count: int, timeout: float = 60) -> str:
        """Type ``code`` into the notebook's first cell (None: leave it), run it, and return its output
        once the cell shows execution count ``count``."""
        cell = self.page.locator(".jp-NotebookPanel:visible .jp-Cell").first
        self._click(cell.locator(".cm-content"))
        if code is not None:
            self.page.keyboard.type(code)
        prompt = cell.locator(f'.jp-InputPrompt:has-text("[{count}]")')
        self.page.keyboard.press("Shift+Enter")
        try:
            prompt.wait_for(timeout=10_000)
        except Exception:
            # JupyterLab now and then drops a run given as its kernel connects: the prompt stays "[ ]" (a run
            # it queued shows "[*]"), and nothing reaches the server. Then once more: the count must still
            # be ``count``, so nothing ran twice.
            if cell.locator(".jp-InputPrompt").inner_text().strip() in ("[ ]:", "[ ]"):
                self._click(cell.locator(".cm-content"))
                self.page.keyboard.press("Shift+Enter")
            prompt.wait_for(timeout=timeout * 1000)
        return cell.locator(".jp-OutputArea-output").first.inner_text(timeout=10_000).strip()

    def _click(self, target, timeout: float = 60) -> None:
        """Click ``target``; a dialog JupyterLab raises meanwhile (its poll of a server that was out of
        reach a moment ago can fail after the hop is back: seen here) is dismissed and the click tried again."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                target.click(timeout=3000)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                self.dismiss_dialogs()

    def terminal(self, line: str) -> None:
        self.launcher().locator('.jp-LauncherCard[data-category="Other"]').filter(has_text="Terminal").first.click()
        term = self.page.locator(".jp-Terminal:visible")
        term.wait_for(timeout=30_000)
        self.page.locator(".jp-Terminal:visible .xterm-screen").wait_for(timeout=30_000)
        self.page.wait_for_timeout(1000)  # the shell's prompt
        term.click()
        self.page.keyboard.type(line + "\n")

    def upload(self, path: Path) -> None:
        with self.page.expect_file_chooser() as chooser:
            self.page.locator('[title^="Upload Files"]').first.click()
        chooser.value.set_files(str(path))
        confirm = self.page.locator('.jp-Dialog button:has-text("Upload")')  # JupyterLab asks above 15 MB
        confirm.wait_for(timeout=10_000)
        confirm.click()

    def show_notebook(self) -> None:
        self.page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab:has-text(".ipynb")').first.click()

    def dismiss_dialogs(self) -> None:
        """Close what JupyterLab said while its server could not be reached (a reset hop, a save); its
        "Server Connection Error" too, which it raises when a poll falls into the few seconds of a reset (it
        goes on reconnecting by itself, as the dialog says)."""
        for _ in range(5):
            buttons = self.page.locator('.jp-Dialog button:has-text("Dismiss"), .jp-Dialog button:has-text("Ok"), '
                                        '.jp-Dialog:has-text("Server Connection Error") button:has-text("Close")')
            if not buttons.count():
                return
            with contextlib.suppress(Exception):
                buttons.first.click(timeout=2000)

    def server_gone(self) -> bool:
        """JupyterLab's own word that its server is gone. A save that failed meanwhile shows its dialog
        first ("File Save Error ... Failed to fetch", seen here), which holds the other back: it is closed
        on the way."""
        if self.page.locator('.jp-Dialog:has-text("Server Connection Error")').count() > 0:
            return True
        others = self.page.locator(".jp-Dialog").filter(has_not_text="Server Connection Error").locator(
            'button:has-text("Close")')
        with contextlib.suppress(Exception):
            if others.count():
                others.first.click(timeout=2000)
        return False


def _folder(sbx: SandboxConfig, name: str) -> Path:
    """A fresh notebook directory in the cluster user's home (Jupyter's files, and the uploads, go there)."""
    folder = sbx.home / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    shutil.chown(folder, sbx.username, sbx.username)
    return folder


def _cli(sbx: SandboxConfig, where: Path, via: str, folder: str, **lab) -> LabCli:
    # Each lab keeps its JupyterLab workspace beside it, so no page restores another test's tabs.
    setup = [f"source {sbx.venv}/bin/activate", 'export JUPYTERLAB_WORKSPACES_DIR="$LAB_DIR/workspaces"']
    return LabCli(sbx, where, via=via, notebook_dir=f"~/{folder}", setup=setup, **lab)


@pytest.fixture(scope="module")
def walltime_lab(chromium, sbx, tmp_path_factory):
    """A lab with a 3-minute limit and its notebook open, started before the other browser tests and
    ended by the last one (it runs beside them)."""
    where = tmp_path_factory.mktemp("walltime")
    _folder(sbx, "browser-walltime")
    cli = _cli(sbx, where, "compute", "browser-walltime", sbatch={"partition": "debug", "time": WALLTIME})
    rec, opened = start_for_browser(cli, "wall", where)
    page = Page(chromium, where)
    with page.evidence("walltime lab opens and runs a cell"):
        page.open_lab(opened)
        page.new_notebook()
        assert page.run_cell("print('before the end')", 1) == "before the end"
    yield cli, rec, page
    page.close()
    cli.cleanup()


@pytest.mark.browser
@pytest.mark.parametrize("via", ["compute", "login", "reverse"])
def test_jupyterlab_works_in_a_browser_and_lives_through_a_drop(chromium, walltime_lab, sbx, tmp_path, via):
    folder = _folder(sbx, f"browser-{via}")
    cli = _cli(sbx, tmp_path, via, folder.name)
    page = Page(chromium, tmp_path)
    try:
        rec, opened = start_for_browser(cli, f"b{via}", tmp_path)
        node = sbx.hostname("compute")
        with page.evidence(f"{via}: the launcher"):
            page.open_lab(opened)
        with page.evidence(f"{via}: a notebook runs a cell on the node"):
            page.new_notebook()
            assert page.run_cell("import socket; print(socket.gethostname())", 1) == node
        with page.evidence(f"{via}: a terminal runs hostname"):
            page.terminal(f"hostname > {folder}/terminal-hostname")
            wait_for(lambda: (folder / "terminal-hostname").exists()
                     and (folder / "terminal-hostname").read_text().strip() == node, timeout=30)
        with page.evidence(f"{via}: 20 MB uploaded through the file browser"):
            upload = tmp_path / "twenty-mb.bin"
            upload.write_bytes(os.urandom(UPLOAD_BYTES))
            page.upload(upload)
            target = folder / upload.name
            wait_for(lambda: target.exists() and target.stat().st_size == UPLOAD_BYTES, timeout=120)
            assert target.read_bytes() == upload.read_bytes()
        with page.evidence(f"{via}: the page lives through a reset of the hop"):
            page.show_notebook()
            subprocess.run(["nsenter", f"--net=/run/netns/{sbx.netns('jump')}", "ss", "-K", "-tn", "dst",
                            sbx.addresses.links[0].left_addr], check=True, capture_output=True)
            log = cli.state_dir / "labs" / f"b{via}.forward.log"
            wait_for(lambda: "dropped" in log.read_text(), timeout=15)
            wait_for(lambda: answers(rec["forward_port"]), timeout=60)  # the same URL, no user action
            page.dismiss_dialogs()
            assert page.run_cell(None, 2) == node  # the same page, no reload
    finally:
        page.close()
        cli.cleanup()  # the lab, and the login this test's state directory kept


# -- the installed command (while the 3-minute lab above runs out) ------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The ``fabfile-lab`` of a fresh venv into which only the wheel (and its dependencies) went."""
    where = tmp_path_factory.mktemp("installed")
    build = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(where / "dist"), REPO],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    wheel = next((where / "dist").glob("fabfile_lab-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True, timeout=120)
    # Away from the repository (its egg-info would count as "already installed") and its PYTHONPATH.
    pip = subprocess.run([str(where / "venv" / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                          str(wheel)], capture_output=True, text=True, timeout=600, cwd=where, env=_env(where))
    assert pip.returncode == 0, pip.stderr[-2000:]
    return where / "venv" / "bin" / "fabfile-lab"


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FABFILE_", "INVOKE_", "FLAB_", "PYTHON"))}
    return {**env, "XDG_CONFIG_HOME": str(home / "config"), "XDG_STATE_HOME": str(home / "state")}


def test_the_wheel_has_what_the_command_needs_and_nothing_from_the_repository(installed, tmp_path):
    python = installed.parent / "python"
    where = subprocess.run([str(python), "-c", "import fabfile_lib, fabfile_lib.batch_script as b; "
                            "print(fabfile_lib.__file__); print(len(b._BODY))"],
                           cwd=tmp_path, capture_output=True, text=True, env=_env(tmp_path), check=True).stdout
    assert str(installed.parent.parent) in where.splitlines()[0] and not where.startswith(REPO)
    helped = subprocess.run([str(installed), "--help"], cwd=tmp_path, capture_output=True, text=True,
                            env=_env(tmp_path))
    assert helped.returncode == 0 and "fabfile-lab" in helped.stdout
    listed = subprocess.run([str(installed), "--list"], cwd=tmp_path, capture_output=True, text=True,
                            env=_env(tmp_path)).stdout
    assert "start" in listed and "config" in listed


def test_config_init_then_doctor_start_and_cancel_from_any_directory(installed, sbx, tmp_path):
    work = tmp_path / "anywhere"
    work.mkdir()
    assert not (work / "tasks.py").exists()
    env = _env(tmp_path)
    child = pexpect.spawn(str(installed), ["config", "init"], cwd=str(work), env=env, encoding="utf-8", timeout=120)
    for question, answer in (("ssh config file", str(sbx.ssh_config)), ("login host", "login"), ("jump host", ""),
                             ("partition", "debug"), ("time limit", "00:30:00"),
                             ("environment", f"venv:{sbx.venv}")):
        child.expect(question)
        child.sendline(answer)
    child.expect(pexpect.EOF)
    said = child.before
    child.close()
    assert child.exitstatus == 0, said
    assert "✓ login node login" in said and "✗" not in said, said
    config = tmp_path / "config" / "fabfile-lab" / "config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(installed), *args], cwd=work, capture_output=True, text=True, env=env, timeout=240)

    doctor = run("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    started = run("start", "--detach", "--json", "--no-browser")
    assert started.returncode == 0, started.stderr
    lab = json.loads(started.stdout)
    status_url = lab["url"].replace("/lab?", "/api/status?")
    assert requests.get(status_url, timeout=10).status_code == 200
    status = run("status")
    assert "JupyterLab on a private socket" in status.stdout and "(answers)" in status.stdout, status.stdout
    cancelled = run("cancel")
    assert cancelled.returncode == 0, cancelled.stderr
    # (the 3-minute lab runs beside this one: only this lab's job and files are looked at)
    wait_for(lambda: ssh(sbx, "login", f"squeue -h -j {lab['job_id']}").stdout.strip() == "", timeout=30, step=1)
    assert not list((sbx.home / ".fabfile-lab").glob("default-*"))
    again = run("cancel")
    assert again.returncode == 1 and "`fabfile-lab list --cluster`" in again.stderr, again.stderr


# -- the 3-minute lab's end -------------------------------------------------------------------------

@pytest.mark.browser
def test_the_walltime_is_announced_and_its_end_seen_on_the_page(walltime_lab, sbx):
    """Also the forward's side of it: a warning in its log before the end, and the forward stopping
    within 10 s of the job's end, saying why."""
    cli, rec, page = walltime_lab
    log_path = cli.state_dir / "labs" / "wall.forward.log"
    # The other tests of this module run meanwhile, so the end may have come already: it is timed from the
    # job's own end mark and the forward log's last write, not from when this test looks.
    end_mark = Path(rec["remote_dir"]) / "ended"
    wait_for(end_mark.exists, timeout=240, step=1)
    wait_for(lambda: forward_ended(cli, "wall"), timeout=15)
    assert log_path.stat().st_mtime - end_mark.stat().st_mtime <= 10  # the forward stopped, saying why
    log = log_path.read_text()
    ended = re.search(r"has ended: (it reached its time limit|it was cancelled)", log)
    assert ended and 0 <= log.find("about 1 minute") < ended.start(), log  # warned before the end
    wait_for(lambda: ssh(sbx, "login", f"squeue -h -j {rec['job_id']}").stdout.strip() == "", timeout=60, step=1)
    job_log = (sbx.home / ".fabfile-lab").glob("wall-*/job.log")
    assert any("Slurm warns" in p.read_text() for p in job_log)  # --signal=B:USR1@300, logged by the script
    with page.evidence("walltime: the page shows the server gone"):
        page.dismiss_dialogs()  # any left from the hop resets: the one that counts comes after the end
        wait_for(page.server_gone, timeout=60)
    status = json.loads(cli("lab.status", "--name", "wall", "--json").stdout)
    assert re.search(r"time limit|cancelled", status["ended_because"]), status
