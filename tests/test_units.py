"""Launch script, settings and hop resolution, without a cluster."""

from __future__ import annotations

import pytest

from fabfile_lib import LabError, batch_script
from fabfile_lib.hops import load_ssh_config, resolve
from fabfile_lib.settings import LabSettings


def _settings(**kw) -> LabSettings:
    return LabSettings.from_config({"login": "login", **kw})


def test_launch_script_has_sbatch_options_and_no_secret():
    s = _settings(sbatch={"partition": "gpu", "cpus-per-task": 4, "exclusive": True, "gpus": False},
                  setup=["module load jupyter"], command="jupyter lab")
    script = batch_script.render(s, "/home/u/.fabfile-lab/my lab-0011aabb")
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --cpus-per-task=4" in script
    assert "#SBATCH --exclusive" in script and "--gpus" not in script
    assert '#SBATCH --output="/home/u/.fabfile-lab/my lab-0011aabb/job.log"' in script  # sbatch keeps it whole
    assert "LAB_DIR='/home/u/.fabfile-lab/my lab-0011aabb'" in script  # quoted for the shell
    assert 'JUPYTER_TOKEN_FILE="$LAB_DIR/token"' in script and "JUPYTER_TOKEN=" not in script
    assert "--port=0 --ServerApp.port_retries=0" in script
    assert script.index("module load jupyter") < script.index("jupyter lab --no-browser")


@pytest.mark.parametrize("kw,words", [
    ({"via": "tunnel"}, "compute, login, reverse"),
    ({"sbatch": {"output": "/tmp/x"}}, "set by the tool"),
    ({"sbatch": {"Bad Opt": 1}}, "long option"),
    ({"sbatch": {"comment": "a\nb"}}, "line break"),
    ({"setup": ["ok", "two\nlines"]}, "line break"),
    ({"local_port": 70000}, "out of range"),
    ({"sbatch": "partition=gpu"}, "lab.sbatch must be a mapping"),
    ({"sbatch": {"comment": ["a", "b"]}}, "single value"),
    ({"sbatch": {"comment": 'say "hi" now'}}, "double quotes"),
    ({"setup": "module load jupyter"}, "lab.setup must be a list"),
    ({"setup": [["nested"]]}, "shell lines"),
    ({"wait_timeout": "soon"}, "lab.wait_timeout must be a number"),
    ({"keepalive": 1.5}, "lab.keepalive must be a whole number"),
    ({"accept_new_host_keys": "maybe"}, "true or false"),
    ({"login": ["a", "b"]}, "lab.login must be a string"),
    ({"via": True}, "lab.via must be a string"),
    ({"persist": [1]}, "lab.persist must be a duration"),
    ({"wait_timout": 10}, "did you mean lab.wait_timeout"),
    ({"name": "../../x"}, "invalid"),
    ({"name": ".."}, "invalid"),
    ({"local_port": "abc"}, "whole number"),
    ({"name": "bad name"}, "invalid"),
    ({"login": ""}, "lab.login is not set"),
])
def test_bad_settings_are_one_line_errors(kw, words):
    with pytest.raises(LabError, match=words) as exc:
        LabSettings.from_config({"login": "login", **kw})
    assert "\n" not in str(exc.value)


def test_resolve_aliases_proxyjump_and_proxycommand(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text(
        "Host work-via-jump\n  HostName 10.1.2.3\n  User alice\n  Port 2222\n  IdentityFile ~/.ssh/k\n"
        "  ProxyCommand ssh alice@jump.example -W %h:%p\n"
        "Host login2\n  HostName 10.1.2.4\n  ProxyJump jump-server\n  StrictHostKeyChecking accept-new\n"
        "  UserKnownHostsFile /tmp/kh1 /tmp/kh2\n")
    conf = load_ssh_config(cfg)
    s = _settings()
    a = resolve("work-via-jump", conf, s)
    assert (a.hostname, a.user, a.port) == ("10.1.2.3", "alice", 2222)
    assert a.proxy_command == "ssh alice@jump.example -W 10.1.2.3:2222" and not a.proxy_jump
    assert a.identities[0].endswith("/.ssh/k") and not a.accept_new
    b = resolve("bob@login2:2200", conf, s)
    assert (b.hostname, b.user, b.port, b.proxy_jump) == ("10.1.2.4", "bob", 2200, "jump-server")
    assert b.accept_new and b.known_hosts == ("/tmp/kh1", "/tmp/kh2")
    c = resolve("plain.example", conf, s)
    assert c.hostname == "plain.example" and c.port == 22 and c.known_hosts[0].endswith(".ssh/known_hosts")


def test_bad_port_in_host_spec():
    with pytest.raises(LabError, match="port"):
        resolve("host:ssh", load_ssh_config(None), _settings())


def test_wait_polls_often_while_a_job_starts_and_gently_once_it_queues():
    from fabfile_lib.lab import poll_interval

    assert poll_interval(True, 500) == 0.1 and poll_interval(False, 3) == 0.2
    assert poll_interval(False, 60) == 1.0 and poll_interval(False, 600) == 5.0


def test_sbatch_values_with_blanks_are_quoted_and_defaults_kept():
    s = _settings(sbatch={"comment": "two words", "partition": "debug"})
    lines = batch_script.sbatch_lines(s, "/lab")
    assert '#SBATCH --comment="two words"' in lines and "#SBATCH --partition=debug" in lines
    assert "#SBATCH --time=01:00:00" in lines  # the default limit stays unless the site's is wanted
    assert "#SBATCH --time" not in " ".join(batch_script.sbatch_lines(_settings(sbatch={"time": ""}), "/lab"))


def test_environment_strings_are_taken_for_numbers_and_booleans():
    s = _settings(wait_timeout="30", local_port="8888", accept_new_host_keys="true")
    assert (s.wait_timeout, s.local_port, s.accept_new_host_keys) == (30.0, 8888, True)


def test_record_paths_never_leave_the_state_directory(tmp_path):
    from fabfile_lib import state

    for bad in ("../x", "a/b", "..", ""):
        with pytest.raises(LabError, match="invalid"):
            state.path_for(tmp_path, bad)
