"""Trust on the laptop, against the sandbox: a repository, a working directory, /tmp or the cluster's
output configures nothing and runs nothing as the user.

The ``fabfile-lab`` command is run as a researcher runs it (its console script, from a directory of their
choosing, their own config file in ``$XDG_CONFIG_HOME``); every hostile file here writes a marker if
anything runs it, on the laptop or on the cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from fabfile_lib.sandbox import SandboxConfig, cluster

from .conftest import REPO, answers, one_line_error, require_sandbox, ssh, throwaway_user

pytestmark = pytest.mark.sandbox

FABFILE_LAB = str(Path(sys.executable).with_name("fabfile-lab"))  # the console script of `pip install -e .`
SCOPED = 'fe80::1%h\nProxyCommand sh -c "touch {marker}"'


class User:
    """A researcher's laptop: their own config file and state, and the installed command."""

    def __init__(self, sbx: SandboxConfig, home: Path, **lab):
        self.sbx, self.home = sbx, home
        self.lab = {"ssh_config": str(sbx.ssh_config), "login": "login",
                    "sbatch": {"partition": "debug", "time": "00:30:00"},
                    "setup": [f"source {sbx.venv}/bin/activate"], "wait_timeout": 60, **lab}
        config = home / "cfg" / "fabfile-lab" / "config.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump({"lab": self.lab}))
        config.chmod(0o600)
        self.state = home / "state" / "fabfile-lab"

    def __call__(self, *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FABFILE_", "INVOKE_", "FLAB_", "PYTHON"))}
        env.update(XDG_CONFIG_HOME=str(self.home / "cfg"), XDG_STATE_HOME=str(self.home / "state"))
        return subprocess.run([FABFILE_LAB, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL, env=env)

    def record(self, name: str) -> dict:
        return json.loads((self.state / "labs" / f"{name}.json").read_text())


@pytest.fixture
def user(sbx, tmp_path, lab_cli):
    lab_cli(state_dir=str(tmp_path / "laptop" / "state" / "fabfile-lab"))  # its cleanup cancels what is left
    return User(sbx, tmp_path / "laptop")


def _warnings(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("warning:")]


def _hostile_repository(where: Path, markers: Path, cluster_marker: str) -> Path:
    where.mkdir(parents=True)
    (where / "evil_ssh_config").write_text(
        f'Match exec "touch {markers}/match-exec"\n'
        "Host *\n"
        f"    ProxyCommand sh -c 'touch {markers}/proxy-command'\n"
        f"    KnownHostsCommand /bin/sh -c 'touch {markers}/known-hosts-command'\n")
    (where / "fabfile-lab.yaml").write_text(yaml.safe_dump({
        "lab": {"ssh_config": "evil_ssh_config", "login": "attacker.example", "jump": "attacker.example",
                "accept_new_host_keys": True, "state_dir": "./records",
                "setup": [f"touch $HOME/{cluster_marker}"],
                "command": f"sh -c 'touch $HOME/{cluster_marker}; exec jupyter lab \"$@\"' x",
                "sbatch": {"time": "00:20:00", "chd": "/tmp"}, "name": "team"},
        "tasks": {"executor_class": "evil.Executor"}}))
    (where / "sub").mkdir()
    return where


def test_a_hostile_repository_configures_only_what_a_project_may_and_runs_nothing(user, sbx, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    cluster_marker = f"project-marker-{uuid.uuid4().hex[:8]}"
    repo = _hostile_repository(tmp_path / "repo", markers, cluster_marker)
    for cwd in (repo, repo / "sub"):
        for args in (["status"], ["config", "show"], ["doctor"]):
            proc = user(*args, cwd=cwd)
            assert proc.returncode == 0, f"{args}: {proc.stdout}{proc.stderr}"
            warned = _warnings(proc)
            assert len(warned) == 1 and "refused" in warned[0] and "lab.ssh_config" in warned[0], proc.stderr
            for key in ("lab.login", "lab.jump", "lab.setup", "lab.command", "lab.state_dir", "tasks",
                        "lab.accept_new_host_keys", "lab.sbatch.chd"):
                assert key in warned[0], key
            took = warned[0].split("took ", 1)[1].split(";")[0]
            assert set(took.split(", ")) == {"lab.sbatch", "lab.name"} and "config allow" in warned[0], warned[0]
    shown = user("config", "show", cwd=repo)
    assert "name: team" in shown.stdout and "time: 00:20:00" in shown.stdout  # the data keys are taken
    assert "attacker" not in shown.stdout and "evil_ssh_config" not in shown.stdout

    started = user("start", "--detach", "--no-browser", cwd=repo / "sub")
    assert started.returncode == 0, started.stderr
    assert len(_warnings(started)) == 1
    record = user.record("team")  # the project's name; the user's own cluster and setup
    assert record["settings"]["login"] == "login" and record["settings"]["ssh_config"] == str(sbx.ssh_config)
    assert answers(record["forward_port"])
    assert not (repo / "records").exists() and not (repo / "sub" / "records").exists()
    assert list(markers.iterdir()) == [] and not (sbx.home / cluster_marker).exists()
    assert user("cancel", "--name", "team", cwd=repo).returncode == 0


def test_an_allowed_project_file_gives_every_key_until_it_is_edited(user, tmp_path):
    repo = tmp_path / "team"
    repo.mkdir()
    project = repo / "fabfile-lab.yaml"
    project.write_text(yaml.safe_dump({"lab": {"setup": ["module load team-python"], "name": "team"}}))
    before = user("config", "show", cwd=repo)
    assert "module load team-python" not in before.stdout and "refused lab.setup" in before.stdout
    allowed = user("config", "allow", cwd=repo)
    assert allowed.returncode == 0 and f"allowed {project}" in allowed.stdout, allowed.stderr
    after = user("config", "show", cwd=repo)
    assert "module load team-python" in after.stdout and "allowed, every key taken" in after.stdout
    assert _warnings(after) == []
    project.write_text(project.read_text() + "# edited\n")
    edited = user("config", "show", cwd=repo)
    assert "module load team-python" not in edited.stdout and len(_warnings(edited)) == 1


def test_a_project_file_another_user_owns_or_under_a_world_writable_directory_is_skipped(user, tmp_path):
    theirs = tmp_path / "shared"
    (theirs / "work").mkdir(parents=True)
    (theirs / "fabfile-lab.yaml").write_text("lab: {name: theirs}\n")
    writable = tmp_path / "scratch"
    (writable / "proj" / "work").mkdir(parents=True)
    (writable / "proj" / "fabfile-lab.yaml").write_text("lab: {name: planted}\n")
    writable.chmod(0o777)
    with throwaway_user() as account:
        subprocess.run(["chown", account, str(theirs / "fabfile-lab.yaml")], check=True)
        for cwd, why in ((theirs / "work", "is owned by another user"), (writable / "proj" / "work",
                                                                          "is writable by others")):
            proc = user("config", "show", cwd=cwd)
            assert proc.returncode == 0, proc.stderr
            warned = _warnings(proc)
            assert len(warned) == 1 and warned[0].startswith("warning: skipped ") and why in warned[0], proc.stderr
            assert "name: default" in proc.stdout
        # and `config allow` does not take it either
        assert "cannot be allowed" in one_line_error(user("config", "allow", str(theirs / "fabfile-lab.yaml"),
                                                          cwd=tmp_path))


def test_modules_in_the_working_directory_are_never_imported(user, tmp_path):
    work = tmp_path / "notebooks"
    markers = tmp_path / "markers"
    markers.mkdir()
    (work / "fabric").mkdir(parents=True)
    for module in ("paramiko.py", "yaml.py", "invoke.py", "fabric/__init__.py", "fabfile_lib.py"):
        (work / module).write_text(f"open({str(markers / module.replace('/', '_'))!r}, 'w').close()\n")
    started = user("start", "--name", "mods", "--detach", "--no-browser", cwd=work)
    assert started.returncode == 0, started.stderr
    assert user("tunnel", "--name", "mods", "--stop", cwd=work).returncode == 0
    again = user("tunnel", "--name", "mods", "--detach", "--no-browser", cwd=work)
    assert again.returncode == 0, again.stderr
    assert answers(user.record("mods")["forward_port"])
    assert list(markers.iterdir()) == []
    assert user("cancel", "--name", "mods", cwd=work).returncode == 0


@pytest.mark.parametrize("via", ["compute", "reverse"])
def test_a_node_file_with_a_scope_id_and_a_proxycommand_runs_nothing(lab_cli, sbx, tmp_path, via):
    """Code running as the user in the job (standing in: a setup line) rewrites the lab's node file."""
    marker = tmp_path / "pwned"
    forged = SCOPED.format(marker=marker).replace("%", "%%").replace("\n", "\\n")
    cli = lab_cli(setup=[f"source {sbx.venv}/bin/activate", f"printf '{forged}\\n' > \"$LAB_DIR/node\"; sleep 1"])
    err = one_line_error(cli("lab.start", "--name", "scoped", "--via", via, "--detach", "--no-browser"))
    assert "not a host name" in err and "\\n" in err, err  # the cluster's text quoted, escaped
    vscode = cli("lab.vscode", "--name", "scoped")
    assert vscode.returncode != 0 and "Traceback" not in vscode.stderr
    assert not marker.exists()


def test_hosts_forged_in_lab_json_or_the_record_run_nothing_and_are_one_line(lab_cli, sbx, tmp_path):
    marker = tmp_path / "pwned"
    cli = lab_cli()
    assert cli("lab.start", "--name", "forged", "--via", "reverse", "--detach", "--no-browser").returncode == 0
    assert cli("lab.vscode", "--name", "forged").returncode == 0
    ide = cli.state_dir / "ssh" / "forged.conf"
    entry = ide.read_text()
    remote = Path(cli.record("forged")["remote_dir"])
    meta = json.loads((remote / "lab.json").read_text())
    (remote / "lab.json").write_text(json.dumps({**meta, "login_host": SCOPED.format(marker=marker)}))
    other = lab_cli(state_dir=str(tmp_path / "other"))  # another laptop: the forged lab.json is skipped
    err = one_line_error(other("lab.attach", "--name", "forged", "--detach", "--no-browser"))
    assert "no lab named 'forged'" in err, err
    assert not (other.state_dir / "labs" / "forged.json").exists()

    path = cli.state_dir / "labs" / "forged.json"
    good = path.read_text()
    for key in ("login_host", "node_addr", "node"):
        path.write_text(json.dumps({**json.loads(good), key: SCOPED.format(marker=marker)}))
        for task in ("lab.status", "lab.vscode", "lab.tunnel"):
            err = one_line_error(cli(task, "--name", "forged", *(["--detach"] if task == "lab.tunnel" else [])))
            assert "damaged" in err and key in err, err
    assert ide.read_text() == entry  # the IDE entry was never rewritten with it
    ssh_g = subprocess.run(["ssh", "-G", "-F", str(ide), "fabfile-lab-forged"], capture_output=True, text=True)
    assert ssh_g.returncode == 0 and "proxycommand sh" not in ssh_g.stdout.lower()
    assert not marker.exists()
    path.write_text(good)


def test_a_token_the_tool_did_not_make_is_refused_in_one_line(lab_cli, tmp_path):
    cli = lab_cli()
    assert cli("lab.start", "--name", "tok", "--detach", "--no-browser").returncode == 0
    token_file = Path(cli.record("tok")["remote_dir"]) / "token"
    good = token_file.read_text()
    token_file.write_text("x</script><script>alert(1)</script>\x1b[2J\n")
    other = lab_cli(state_dir=str(tmp_path / "other"))  # another laptop
    err = one_line_error(other("lab.attach", "--name", "tok", "--detach", "--no-browser", timeout=60))
    assert "token that the tool did not make" in err and "\x1b" not in err, err
    assert not (other.state_dir / "labs" / "tok.json").exists()
    token_file.write_text(good)


def test_reverse_mode_starts_when_another_user_took_the_old_predictable_login_node_directory(lab_cli, sbx):
    cli = lab_cli(via="reverse")
    submitted = cli("lab.submit", "--name", "taken", "--sbatch", "hold")
    assert submitted.returncode == 0, submitted.stderr
    record = cli.record("taken")
    planted = Path(f"/tmp/flr-{record['remote_dir'].rsplit('-', 1)[1]}")  # what a reverse lab used to make
    with throwaway_user() as account:
        planted.mkdir(mode=0o755)
        try:
            subprocess.run(["chown", account, str(planted)], check=True)
            held = ssh(sbx, "login", f"squeue -h -j {record['job_id']} -o %r").stdout.strip()
            assert held == "JobHeldUser", held  # it cannot start before the directory is taken
            assert ssh(sbx, "login", f"scontrol release {record['job_id']}").returncode == 0
            waited = cli("lab.wait", "--name", "taken", timeout=120)
            assert waited.returncode == 0, waited.stderr
            assert cli("lab.tunnel", "--name", "taken", "--detach", "--no-browser").returncode == 0
            assert answers(cli.record("taken")["forward_port"])
            assert cli.record("taken")["remote_socket"].startswith("/tmp/flr-")
            assert not cli.record("taken")["remote_socket"].startswith(f"{planted}/")
        finally:
            planted.rmdir()
        assert cli("lab.cancel", "--name", "taken").returncode == 0


def _sandbox_up(tmp_path: Path, dir: Path, venv: Path) -> subprocess.CompletedProcess:
    config = tmp_path / "sandbox.yaml"
    config.write_text(yaml.safe_dump({"sandbox": {"name": "flevil", "subnet": "10.252.0.0/24", "dir": str(dir),
                                                  "venv": str(venv)}}))
    return subprocess.run(["python3", "-m", "invoke", "-f", str(config), "sandbox.up"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL)


def test_the_sandbox_uses_no_directory_or_venv_that_another_account_made(tmp_path):
    require_sandbox()
    base = Path(f"/var/tmp/fl-planted-{uuid.uuid4().hex[:6]}")  # as /var/tmp/fabfile-lab, made first by them
    with throwaway_user() as account:
        try:
            base.mkdir(mode=0o755)
            subprocess.run(["chown", account, str(base)], check=True)
            err = one_line_error(_sandbox_up(tmp_path, base / "flevil", base / "venv"))
            assert "owned by another user" in err and "nothing was used" in err, err
            assert list(base.iterdir()) == []

            os.chown(base, 0, 0)  # a base of root's, and a ready-venv someone planted in it
            venv = base / "venv"
            (venv / "bin").mkdir(parents=True)
            (venv / ".fabfile-lab-ready").touch()
            (venv / "bin" / "pip").write_text("#!/bin/sh\ntouch /tmp/pwned-by-pip\n")
            subprocess.run(["chown", "-R", account, str(venv)], check=True)
            err = one_line_error(_sandbox_up(tmp_path, base / "flevil", venv))
            assert "sandbox.venv" in err and "owned by another user" in err, err
            assert not (base / "flevil").exists() and not Path("/tmp/pwned-by-pip").exists()
            assert "flevil" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        finally:
            subprocess.run(["rm", "-rf", str(base)], check=True)


def test_the_sandbox_writes_the_users_ssh_files_never_through_a_link(sbx, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.write_text("root's own file\n")
    ssh_dir = sbx.home / ".ssh"
    uid, gid = sbx.home.stat().st_uid, sbx.home.stat().st_gid
    for name in ("known_hosts", "id_ed25519.pub"):
        (ssh_dir / name).unlink()
        (ssh_dir / name).symlink_to(scratch)
        os.chown(ssh_dir / name, uid, gid, follow_symlinks=False)
    cluster.ensure_keys(sbx)
    assert scratch.read_text() == "root's own file\n" and scratch.stat().st_uid == 0
    for name in ("known_hosts", "id_ed25519.pub", "authorized_keys", "config", "id_ed25519"):
        info = (ssh_dir / name).lstat()
        assert not (ssh_dir / name).is_symlink() and info.st_uid == uid and oct(info.st_mode & 0o777) == "0o600"
    assert "root's own file" not in (ssh_dir / "authorized_keys").read_text()
    assert ssh(sbx, "compute", "ssh login hostname").stdout.strip() == sbx.hostname("login")
