"""Whatever a user types wrong: one line that says what and how to fix it, and nothing left behind.

Every case runs the real CLI against the sandbox and checks: a non-zero exit, exactly one stderr line,
starting `error:`, no traceback, no job in squeue, no record and no remote lab directory left.
"""

from __future__ import annotations

import socket

import pytest
import yaml

from .conftest import assert_nothing_left, one_line_error, ssh

pytestmark = pytest.mark.sandbox

START = ("lab.start", "--name", "bad", "--no-browser")

# (id, lab settings, the command, words the error must contain)
CASES = [
    ("sbatch-string", {"sbatch": "partition=debug"}, START, ["lab.sbatch must be a mapping"]),
    ("sbatch-list-value", {"sbatch": {"comment": ["a", "b"]}}, START, ["single value"]),
    ("sbatch-quotes-and-blanks", {"sbatch": {"comment": 'say "hi" now'}}, START, ["double quotes"]),
    ("sbatch-reserved", {"sbatch": {"output": "/tmp/x"}}, START, ["set by the tool"]),
    ("setup-string", {"setup": "source venv/bin/activate"}, START, ["lab.setup must be a list"]),
    ("setup-nested", {"setup": [["x"]]}, START, ["shell lines"]),
    ("wait-timeout-word", {"wait_timeout": "soon"}, START, ["lab.wait_timeout must be a number"]),
    ("keepalive-fraction", {"keepalive": 1.5}, START, ["lab.keepalive must be a whole number"]),
    ("keepalive-zero", {"keepalive": 0}, START, ["lab.keepalive"]),
    ("accept-new-word", {"accept_new_host_keys": "maybe"}, START, ["true or false"]),
    ("via-unknown", {"via": "tunnel"}, START, ["compute, login, reverse"]),
    ("via-boolean", {"via": True}, START, ["lab.via must be a string"]),
    ("transport-unknown", {"transport": "ssh"}, START, ["lab.transport"]),
    ("persist-word", {"persist": "forever"}, START, ["lab.persist"]),
    ("login-empty", {"login": ""}, START, ["lab.login is not set"]),
    ("login-list", {"login": ["a", "b"]}, START, ["lab.login must be a string"]),
    ("key-typo", {"wait_timout": 30}, START, ["did you mean lab.wait_timeout"]),
    ("port-out-of-range", {"local_port": 70000}, START, ["out of range"]),
    ("port-word", {"local_port": "http"}, START, ["whole number"]),
    ("name-slash", {}, ("lab.start", "--name", "a/b", "--no-browser"), ["invalid"]),
    ("name-space", {}, ("lab.start", "--name", "my lab", "--no-browser"), ["invalid"]),
    ("name-dotdot-cancel", {}, ("lab.cancel", "--name", "../../x"), ["invalid"]),
    ("name-dotdot-status", {}, ("lab.status", "--name", ".."), ["invalid"]),
    ("name-in-config", {"name": "../x"}, ("lab.tunnel",), ["invalid"]),
    ("unknown-lab-tunnel", {}, ("lab.tunnel", "--name", "nosuch"), ["no lab named 'nosuch'"]),
    ("unknown-lab-status", {}, ("lab.status", "--name", "nosuch"), ["no lab named 'nosuch'"]),
    ("unknown-lab-logs", {}, ("lab.logs", "--name", "nosuch"), ["no lab named 'nosuch'"]),
    ("unknown-lab-wait", {}, ("lab.wait", "--name", "nosuch"), ["no lab named 'nosuch'"]),
    ("unknown-lab-open", {}, ("lab.open", "--name", "nosuch"), ["no lab named 'nosuch'"]),
    ("unknown-lab-cancel", {}, ("lab.cancel", "--name", "nosuch"), ["no lab named 'nosuch'"]),
    ("wait-timeout-option", {}, ("lab.wait", "--name", "nosuch", "--timeout", "abc"), ["--timeout"]),
    ("missing-ssh-config", {"ssh_config": "/nonexistent/ssh_config"}, START, ["does not exist"]),
    ("unknown-partition", {"sbatch": {"partition": "nope"}}, START, ["partition"]),
]





@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(lab_cli, sbx, case):
    _, lab, args, words = case
    cli = lab_cli(**lab)
    err = one_line_error(cli(*args))
    for word in words:
        assert word in err, err
    assert_nothing_left(sbx, cli)


def test_a_busy_fixed_port_and_an_unknown_alias(lab_cli, sbx, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        cli = lab_cli(local_port=busy.getsockname()[1])
        assert "already in use" in one_line_error(cli(*START))
    # An alias nobody defined: ssh says it cannot resolve it (looked up from the jump host, in the sandbox).
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host *.invalid\n    ProxyJump jump\n" + sbx.ssh_config.read_text())
    cli = lab_cli(ssh_config=str(cfg), login="no-such-alias.invalid", connect_timeout=5)
    assert "cannot log in to no-such-alias.invalid" in one_line_error(cli(*START))
    assert_nothing_left(sbx, cli)


def test_a_damaged_record_is_one_line(lab_cli, sbx):
    cli = lab_cli()
    labs = cli.state_dir / "labs"
    labs.mkdir(parents=True)
    (labs / "broken.json").write_text("{not json")
    for task in ("lab.status", "lab.cancel", "lab.tunnel"):
        assert "damaged" in one_line_error(cli(task, "--name", "broken"))
    (labs / "broken.json").unlink()


def test_a_string_sbatch_in_a_users_file_is_not_invokes_traceback(lab_cli, sbx, tmp_path):
    """Invoke merges config files before any task runs; a mapping default there would make a string in the
    user's file an AmbiguousMergeError traceback."""
    cli = lab_cli()
    cli.path.write_text(yaml.safe_dump({"lab": {**cli.lab, "sbatch": "partition=debug"}}))
    assert "lab.sbatch must be a mapping" in one_line_error(cli(*START))


def test_a_second_lab_with_the_same_name_is_refused_and_the_first_kept(lab_cli, sbx):
    cli = lab_cli()
    assert cli("lab.start", "--name", "twice", "--no-browser", "--detach").returncode == 0
    first = cli.record("twice")
    err = one_line_error(cli("lab.start", "--name", "twice", "--no-browser", "--detach"))
    assert "already recorded" in err and "lab.cancel --name twice" in err
    assert cli.record("twice")["job_id"] == first["job_id"]
    jobs = ssh(sbx, "login", f"squeue -h -u {sbx.username} -o %i").stdout.split()
    assert jobs == [first["job_id"]]


def test_a_sbatch_value_with_blanks_reaches_slurm_whole(lab_cli, sbx):
    cli = lab_cli(sbatch={"partition": "debug", "comment": "two words"})
    assert cli("lab.submit", "--name", "blanks").returncode == 0
    job = cli.record("blanks")["job_id"]
    assert "Comment=two words" in ssh(sbx, "login", f"scontrol show job {job}").stdout
