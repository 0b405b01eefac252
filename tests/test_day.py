"""A researcher's day against the sandbox: resources per run, profiles, environments that activate in a
batch shell, re-attaching from another machine, JSON for scripts, logs to follow, doctor, IDE entries, and
a team's own tasks file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pexpect
import pytest
import requests

from .conftest import REPO, assert_nothing_left, one_line_error, ssh

pytestmark = pytest.mark.sandbox


def _job(sbx, job_id: str) -> str:
    return ssh(sbx, "login", f"scontrol show job {job_id}").stdout


def _answers(url: str) -> int:
    base, _, query = url.partition("/lab?")
    token = query.removeprefix("token=")
    return requests.get(f"{base}/api/status", headers={"Authorization": f"token {token}"}, timeout=10).status_code




def test_resources_for_one_run_json_and_attach_list_cancel_from_another_machine(lab_cli, sbx, tmp_path):
    cli = lab_cli()
    proc = cli("lab.start", "--name", "day", "--detach", "--no-browser", "--json", "--partition", "long",
               "--time", "00:10:00", "--cpus", "1", "--sbatch", "comment=two words", "--sbatch", "requeue")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # stdout is the one JSON object; progress went to stderr
    assert set(summary) == {"name", "job_id", "node", "url", "local_port", "via", "time_left"}
    assert "submitted job" in proc.stderr and summary["name"] == "day" and summary["via"] == "compute"
    assert _answers(summary["url"]) == 200
    job = _job(sbx, summary["job_id"])
    for value in ("Partition=long", "TimeLimit=00:10:00", "Comment=two words", "Requeue=1", "NumCPUs=1"):
        assert value in job, job

    # The library's debug log shows every hop and command, never the token.
    debug = cli("lab.status", "--name", "day", env={"INVOKE_LAB_DEBUG": "1"})
    asked = "hop login" in debug.stderr and "squeue" in debug.stderr
    assert asked or "vouched for by its own path" in debug.stderr, debug.stderr
    assert cli.record("day")["token"] not in debug.stderr

    # Another laptop: the same config, an empty state directory.
    other = lab_cli(state_dir=str(tmp_path / "other-laptop"))
    listed = other("lab.list", "--cluster")
    assert re.search(rf"day: job {summary['job_id']} running .*not recorded here", listed.stdout), listed.stdout
    attached = other("lab.attach", "--name", "day", "--detach", "--no-browser", "--json")
    assert attached.returncode == 0, attached.stderr
    again = json.loads(attached.stdout)
    assert again["job_id"] == summary["job_id"] and again["local_port"] != summary["local_port"]
    assert _answers(again["url"]) == 200
    assert "(recorded here)" in other("lab.list", "--cluster").stdout
    # The token came over SFTP into a private record: same token, file 0600.
    assert other.record("day")["token"] == cli.record("day")["token"]
    assert oct(os.stat(other.state_dir / "labs" / "day.json").st_mode & 0o777) == "0o600"

    # A third laptop cancels it, knowing only the job id; the first one then sees it ended.
    third = lab_cli(state_dir=str(tmp_path / "third-laptop"))
    assert third("lab.cancel", "--job", summary["job_id"]).returncode == 0
    assert ssh(sbx, "login", f"squeue -h -j {summary['job_id']}").stdout.strip() == ""
    status = cli("lab.status", "--name", "day")
    assert "has ended" in status.stdout, status.stdout + status.stderr
    assert cli("lab.cancel", "--name", "day").returncode == 0  # forgets it here
    assert other("lab.cancel", "--name", "day").returncode == 0


def test_attach_to_a_lab_that_is_not_there_is_one_line(lab_cli, sbx, tmp_path):
    err = one_line_error(lab_cli()("lab.attach", "--name", "nothere", "--no-browser"))
    assert "no lab named 'nothere'" in err and "lab.list --cluster" in err


def test_a_profile_switches_partition_and_setup_and_is_listed(lab_cli, sbx):
    venv = f"source {sbx.venv}/bin/activate"
    cli = lab_cli(profiles={"big": {"sbatch": {"partition": "long"}, "setup": [venv, "echo profile-big-setup"]}})
    listed = cli("lab.profiles")
    assert listed.returncode == 0 and listed.stdout.startswith("big: sbatch=") and "profile-big-setup" in listed.stdout
    assert cli("lab.submit", "--name", "prof", "--profile", "big").returncode == 0
    record = cli.record("prof")
    assert "Partition=long" in _job(sbx, record["job_id"])
    script = (sbx.home / record["remote_dir"].split(str(sbx.home) + "/", 1)[1] / "launch.sh").read_text()
    assert "echo profile-big-setup" in script
    assert "profile 'small' is not defined" in one_line_error(cli("lab.submit", "--name", "p2", "--profile", "small"))


def _fake_site(sbx) -> None:
    """A site's modules init and a conda, in miniature: `module load conda` puts a stub conda on PATH whose
    shell hook defines `conda activate PREFIX` as sourcing PREFIX/bin/activate."""
    home = sbx.home
    (home / "modinit.sh").write_text(
        'module() { if [ "$1" = load ] && [ "$2" = conda ]; then export PATH="$HOME/fakeconda/bin:$PATH"; fi; }\n')
    (home / "fakeconda" / "bin").mkdir(parents=True, exist_ok=True)
    conda = home / "fakeconda" / "bin" / "conda"
    conda.write_text('#!/bin/sh\n[ "$1 $2" = "shell.bash hook" ] || exit 1\n'
                     "echo 'conda() { if [ \"$1\" = activate ]; then . \"$2/bin/activate\"; fi; }'\n")
    conda.chmod(0o755)
    (home / "uvproj").mkdir(exist_ok=True)
    if not (home / "uvproj" / ".venv").exists():
        (home / "uvproj" / ".venv").symlink_to(sbx.venv)  # a uv project whose .venv has jupyter
    subprocess.run(["chown", "-R", sbx.username, str(home / "modinit.sh"), str(home / "fakeconda"),
                    str(home / "uvproj")], check=True)


@pytest.mark.parametrize("env", [
    {"venv": "VENV"},
    {"modules": ["conda"], "init": "~/modinit.sh", "conda": "VENV"},
    {"uv": "~/uvproj"},
], ids=["venv", "modules+conda", "uv"])
def test_each_environment_kind_starts_a_lab_that_answers(lab_cli, sbx, env):
    _fake_site(sbx)
    env = {k: (str(sbx.venv) if v == "VENV" else v) for k, v in env.items()}
    cli = lab_cli(env=env, setup=[])
    proc = cli("lab.start", "--name", "env", "--detach", "--no-browser", "--json")
    assert proc.returncode == 0, proc.stderr
    assert _answers(json.loads(proc.stdout)["url"]) == 200
    assert cli("lab.cancel", "--name", "env").returncode == 0


@pytest.mark.parametrize("lab,words", [
    ({"env": {"venv": "/nonexistent/venv"}}, "no virtual environment at /nonexistent/venv"),
    ({"env": {}}, "`jupyter` not found after setup (PATH="),
], ids=["missing-venv", "no-jupyter"])
def test_a_broken_environment_is_reported_within_30_seconds(lab_cli, sbx, lab, words):
    cli = lab_cli(setup=[], **lab)
    began = time.monotonic()
    proc = cli("lab.start", "--name", "broken", "--no-browser")
    assert time.monotonic() - began < 30
    assert words in one_line_error(proc) and proc.returncode == 3  # exit code 3: the job ended
    assert_nothing_left(sbx, cli, "broken")


def test_logs_follow_until_the_job_ends(lab_cli, sbx):
    cli = lab_cli()
    assert cli("lab.start", "--name", "follow", "--detach", "--no-browser").returncode == 0
    follower = subprocess.Popen([sys.executable, "-m", "invoke", "-f", str(cli.path), "lab.logs", "--name", "follow",
                                 "--follow"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    ssh(sbx, "login", f"scancel {cli.record('follow')['job_id']}")
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert "fabfile-lab: job" in out and "has ended" in out.splitlines()[-1]


def test_doctor_passes_on_the_sandbox_and_names_a_wrong_partition(lab_cli, sbx):
    cli = lab_cli()
    good = cli("lab.doctor", "--job")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "✗" not in good.stdout and good.stdout.count("✓") >= 8, good.stdout
    assert "shared with the login node" in good.stdout
    bad = lab_cli(sbatch={"partition": "nosuch"})("lab.doctor")
    assert bad.returncode == 1
    assert re.search(r"^✗ partition nosuch: does not exist .*fix:", bad.stdout, re.M), bad.stdout


def test_vscode_entry_reaches_the_node_through_every_hop(lab_cli, sbx):
    cli = lab_cli()
    assert cli("lab.start", "--name", "ide", "--detach", "--no-browser").returncode == 0
    proc = cli("lab.vscode", "--name", "ide")
    assert proc.returncode == 0, proc.stderr
    entry = cli.state_dir / "ssh" / "ide.conf"
    assert f"Include {cli.state_dir}/ssh/*.conf" in proc.stdout and "Jupyter server URL" in proc.stdout
    assert oct(entry.stat().st_mode & 0o777) == "0o600" and "ProxyJump" in entry.read_text()
    hostname = subprocess.run(["ssh", "-F", str(entry), "-o", "BatchMode=yes", "fabfile-lab-ide", "hostname"],
                              capture_output=True, text=True, timeout=30, check=False)
    assert hostname.stdout.strip() == f"{sbx.name}-compute", hostname.stderr
    assert cli("lab.cancel", "--name", "ide").returncode == 0
    assert not entry.exists()


def test_a_terminal_sees_one_live_line_while_the_job_queues(lab_cli, sbx):
    cli = lab_cli(sbatch={"partition": "debug", "begin": "now+3600"})
    child = pexpect.spawn(sys.executable, ["-m", "invoke", "-f", str(cli.path), "lab.start", "--name", "queued",
                                           "--no-browser"], cwd=REPO, encoding="utf-8", timeout=30,
                          dimensions=(24, 120), env={**os.environ, "TERM": "xterm"})
    child.expect(r"job \d+: pending \(BeginTime\), 0:0\d waited")
    first = child.match.group(0)
    child.expect(r"job \d+: pending \(BeginTime\), 0:0[3-9] waited")  # the same line, updated in place
    assert child.match.group(0) != first
    child.sendintr()
    child.expect(pexpect.EOF)
    assert "cancelled" in child.before
    assert_nothing_left(sbx)


def test_the_example_team_tasks_file_runs_end_to_end(lab_cli, sbx, tmp_path):
    project = tmp_path / "analysis"
    (project / "data").mkdir(parents=True)
    (project / "notebook.py").write_text("print('hello')\n")
    (project / "data" / "values.csv").write_text("a,b\n1,2\n")
    cli = lab_cli()
    proc = subprocess.run([sys.executable, "-m", "invoke", "-f", str(cli.path), "--search-root", "examples",
                           "-c", "team_tasks", "work", "--project", str(project)], cwd=REPO, capture_output=True,
                          text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()  # the library's start prints nothing: only what the example prints
    assert len(lines) == 2 and lines[0].startswith("synced ") and lines[1].startswith("lab analysis: job "), lines
    assert proc.stderr.strip() == "", proc.stderr
    url = re.search(r"(http://127\.0\.0\.1:\d+/lab\?token=\S+)", proc.stdout).group(1)
    assert _answers(url) == 200
    copied = sbx.home / "projects" / "analysis"
    assert (copied / "data" / "values.csv").read_text() == "a,b\n1,2\n"
    assert cli("lab.cancel", "--name", "analysis").returncode == 0
