"""The ``fabfile-lab`` command: its config hierarchy, its errors, its names, run as a user would run it
(a process of its own -- forked, ``forked.py`` -- from a directory with no tasks.py). No cluster is
needed: ``logs`` names the lab it looks for, which shows which level gave ``lab.name``."""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fabfile_lib import program, user_config

from .forked import run_forked

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FABFILE_", "INVOKE_", "FLAB_"))}
    environ.update(XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_STATE_HOME=str(tmp_path / "state"),
                   PYTHONPATH=str(REPO), **env)
    return run_forked(program.main, ["fabfile-lab", *args], cwd=cwd or tmp_path, env=environ)


def _file(path: Path, name: str, login: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("lab:\n" + ("  login: somewhere\n" if login else "") + f"  name: {name}\n")
    return path


def _asked_for(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1 and proc.stderr.startswith("error: no lab named "), proc.stderr
    return proc.stderr.split("'")[1]


def test_each_level_of_config_overrides_the_one_before(tmp_path):
    """User file < project file (found upwards) < -f < FABFILE_LAB_* < the task's flag."""
    _file(tmp_path / "cfg" / "fabfile-lab" / "config.yaml", "fromuser")
    work = tmp_path / "project" / "notebooks"
    work.mkdir(parents=True)
    assert _asked_for(_run(tmp_path, "logs", cwd=work)) == "fromuser"
    _file(tmp_path / "project" / "fabfile-lab.yaml", "fromproject", login=False)  # a key a project may set
    assert _asked_for(_run(tmp_path, "logs", cwd=work)) == "fromproject"
    runtime = str(_file(tmp_path / "team.yaml", "fromfile"))
    assert _asked_for(_run(tmp_path, "-f", runtime, "logs", cwd=work)) == "fromfile"
    assert _asked_for(_run(tmp_path, "-f", runtime, "logs", cwd=work, FABFILE_LAB_NAME="fromenv")) == "fromenv"
    flag = _run(tmp_path, "-f", runtime, "logs", "--name", "fromflag", cwd=work, FABFILE_LAB_NAME="fromenv")
    assert _asked_for(flag) == "fromflag"


def test_messages_name_the_command_the_user_runs(tmp_path):
    proc = _run(tmp_path, "status")
    assert proc.returncode == 0 and "start one with `fabfile-lab start`" in proc.stdout
    assert "`fabfile-lab list`" in _run(tmp_path, "logs", "--name", "x").stderr
    unset = _run(tmp_path, "doctor")
    assert unset.returncode == 2 and "`fabfile-lab config init`" in unset.stderr and "inv" not in unset.stderr


@pytest.mark.parametrize("text", ["lab: [\n", "lab: hello\n", "lab:\n  local_port: many\n"])
def test_a_bad_user_file_is_one_error_line_with_exit_2(tmp_path, text):
    where = tmp_path / "cfg" / "fabfile-lab" / "config.yaml"
    where.parent.mkdir(parents=True)
    where.write_text(text)
    proc = _run(tmp_path, "doctor")  # settings are read and checked before anything is connected
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_missing_runtime_file_is_an_error(tmp_path):
    proc = _run(tmp_path, "-f", str(tmp_path / "nope.yaml"), "status")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_help_list_completion_and_config_path(tmp_path):
    listed = _run(tmp_path, "--list")
    for name in ("start", "tunnel", "cancel", "status", "config", "doctor"):
        assert f"  {name} " in listed.stdout
    assert "lab.start" not in listed.stdout
    assert "fabfile-lab" in _run(tmp_path, "--print-completion-script", "bash").stdout
    assert _run(tmp_path, "config", "path").stdout.strip() == str(tmp_path / "cfg" / "fabfile-lab" / "config.yaml")
    assert "config init" in _run(tmp_path, "config", "nope").stderr
    no_tty = _run(tmp_path, "config", "init")
    assert no_tty.returncode == 2 and "run it in a terminal" in no_tty.stderr


def test_config_show_says_which_files_were_read(tmp_path):
    user = _file(tmp_path / "cfg" / "fabfile-lab" / "config.yaml", "shown")
    out = _run(tmp_path, "config", "show", FABFILE_LAB_VIA="login").stdout
    assert f"# read from: {user}" in out and "name: shown" in out and "via: login" in out


def test_the_ssh_hosts_offered_follow_includes_and_skip_patterns(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh" / "conf.d").mkdir(parents=True)
    (tmp_path / ".ssh" / "conf.d" / "site").write_text("Host cluster cluster-login2\n  HostName x\n")
    config = tmp_path / ".ssh" / "config"
    config.write_text("Include conf.d/*\nHost jump *.example !bad\n  User me\nHost *\n  ServerAliveInterval 5\n")
    assert user_config.ssh_hosts(config) == ["cluster", "cluster-login2", "jump"]


@pytest.mark.parametrize("text,env", [("", {}), ("conda:lab", {"conda": "lab"}),
                                      ("module:a,b module:c venv:~/v", {"modules": ["a", "b", "c"], "venv": "~/v"})])
def test_environment_answers(text, env):
    assert user_config.environment(text) == env


@pytest.mark.parametrize("text", ["conda", "spack:x", "venv:"])
def test_environment_answers_that_are_not_kind_value_are_one_line(text):
    from fabfile_lib.errors import ConfigError

    with pytest.raises(ConfigError):
        user_config.environment(text)


def test_the_written_file_is_private_and_loads(tmp_path):
    (tmp_path / "ssh_config").write_text("Host cluster\n")
    answers = user_config.Answers(ssh_config=str(tmp_path / "ssh_config"), login="me@cluster", partition="gpu",
                                  environment="conda:lab")
    where = user_config.write(user_config.lab_section(answers), tmp_path / "cfg" / "fabfile-lab" / "config.yaml")
    assert stat.S_IMODE(where.stat().st_mode) == 0o600 and stat.S_IMODE(where.parent.stat().st_mode) == 0o700
    shown = _run(tmp_path, "config", "show").stdout
    assert "login: me@cluster" in shown and "partition: gpu" in shown and "conda: lab" in shown


def test_help_shows_the_commands_first_and_only_the_options_that_act(tmp_path):
    helped = _run(tmp_path, "--help").stdout
    assert helped.index("Commands:") < helped.index("start") < helped.index("Options:")
    for acting in ("--config", "--help", "--list", "--version", "--print-completion-script"):
        assert acting in helped, acting
    for idle in ("--hide", "--pty", "--dry", "--warn-only", "--echo", "--prompt-for-sudo-password", "--write-pyc",
                 "--command-timeout", "Core options"):
        assert idle not in helped, idle
    for task in ("start", "cancel", "tunnel"):
        text = _run(tmp_path, "--help", task).stdout
        assert "inv " not in text and "invoke.yaml" not in text and "lab.tunnel" not in text, text


@pytest.mark.parametrize("where", ["user", "runtime"])
def test_lab_keys_outside_the_lab_mapping_say_where_they_belong(tmp_path, where):
    path = tmp_path / "cfg" / "fabfile-lab" / "config.yaml" if where == "user" else tmp_path / "team.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("login: somewhere\nvia: login\n")
    proc = _run(tmp_path, *(["-f", str(path)] if where == "runtime" else []), "status")
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "login, via are lab settings outside the `lab:` mapping" in lines[0] and str(path) in lines[0]


_TRANSPORTS = ("paramiko", "fabric", "fabfile_lib.hops")


def _fresh(tmp_path: Path, *commands: list[str]) -> subprocess.Popen:
    """``fabfile-lab COMMAND`` for each of ``commands``, one after the other in one fresh interpreter (what
    they import is the point), which prints after each the transports loaded so far: ``loaded: [...]``."""
    code = ("import json, sys\nfrom fabfile_lib import program\n"
            "for argv in json.loads(sys.argv[1]):\n"
            "    sys.argv = ['fabfile-lab', *argv]\n"
            "    try:\n        program.main()\n    except SystemExit:\n        pass\n"
            f"    print('loaded:', sorted(m for m in {_TRANSPORTS!r} if m in sys.modules), flush=True)")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FABFILE_", "INVOKE_", "FLAB_"))}
    environ.update(XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_STATE_HOME=str(tmp_path / "state"), PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(commands)], cwd=tmp_path, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_what_needs_no_cluster_imports_no_transport(tmp_path):
    """Paramiko and Fabric are most of the start-up: a status with no lab, a list, a config show or the
    help import neither (their tasks import them on first use, lazy.py)."""
    _file(tmp_path / "cfg" / "fabfile-lab" / "config.yaml", "quick")
    commands = [["status"], ["list"], ["config", "show"], ["--help"]]
    out, err = _fresh(tmp_path, *commands).communicate(timeout=60)
    assert out.count("loaded: []") == len(commands), out + err


class _Jupyter(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = b'{"version": "2.14.0"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_status_of_a_lab_that_vouches_for_itself_opens_and_imports_no_connection(tmp_path):
    """Held by a live watcher (here: this process), its URL answering, its time limit known: ``status``
    asks nothing of the cluster, so it imports none of the hops (lazy.Made)."""
    from dataclasses import asdict

    from fabfile_lib import state
    from fabfile_lib.procs import start_time
    from fabfile_lib.settings import LabSettings

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Jupyter)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    where = tmp_path / "state" / "fabfile-lab"
    settings = LabSettings.from_config({"login": "nowhere.invalid", "name": "v", "state_dir": str(where)})
    state.make_dirs(where)
    state.create(where, state.LabRecord(
        name="v", settings=asdict(settings), job_id="42", remote_dir="/h/.fabfile-lab/v-0011aabb", token="t" * 43,
        via="compute", node="n1", node_addr="10.0.0.9", hold="ab12", forward_pid=os.getpid(),
        forward_started=start_time(os.getpid()) or "", forward_port=server.server_address[1],
        job_ends_at=time.time() + 3600))
    _file(tmp_path / "cfg" / "fabfile-lab" / "config.yaml", "v")
    try:
        out, err = _fresh(tmp_path, ["status", "--name", "v"]).communicate(timeout=60)
    finally:
        server.shutdown()
    assert "v: job 42 running, node n1" in out and "(answers)" in out, out + err
    assert "loaded: []" in out, out + err
