"""Policies of a researcher's day, without a cluster: resources and profiles, environments rendered for a
batch shell, the queue line, lab.json, exit codes, ssh entries for IDEs."""

from __future__ import annotations

import io
import subprocess
from datetime import datetime

import pytest

from fabfile_lib import batch_script, environment, ide, lab_dir, slurm
from fabfile_lib.errors import ConfigError, ConnectError, JobEnded, LabError, WaitTimeout
from fabfile_lib.lab import ended_early
from fabfile_lib.settings import LabSettings, sbatch_options
from fabfile_lib.state import LabRecord
from fabfile_lib.tasks._errors import exit_code
from fabfile_lib.tasks._progress import QueueDisplay, clock, expected_start, line

BASE = {"login": "login", "sbatch": {"partition": "debug", "time": "01:00:00", "comment": "from config"},
        "setup": ["echo base"],
        "profiles": {"gpu": {"sbatch": {"partition": "gpu", "gpus": 1}, "setup": ["module load cuda"],
                             "via": "login"},
                     "other": {"login": "other-login", "remote_dir": "/scratch/me"}}}


def test_run_options_override_the_profile_which_overrides_the_config():
    s = LabSettings.from_config(BASE, profile="gpu", sbatch=sbatch_options(
        {"time": "2:00:00", "cpus": 4, "mem": None}, ["comment=two words", "exclusive"]))
    assert s.sbatch == {"time": "2:00:00", "partition": "gpu", "comment": "two words", "gpus": 1,
                        "cpus-per-task": "4", "exclusive": True}
    assert s.setup == ("module load cuda",) and s.via == "login"


def test_a_profile_may_name_another_cluster():
    s = LabSettings.from_config(BASE, profile="other")
    assert (s.login, s.remote_dir, s.sbatch["partition"]) == ("other-login", "/scratch/me", "debug")


@pytest.mark.parametrize("data,profile,words", [
    (BASE, "nope", "lab profile 'nope' is not defined (lab.profiles: gpu, other)"),
    ({**BASE, "profiles": {"x": {"partiton": "a"}}}, "x", "lab.profiles.x.partiton is not a setting"),
    ({**BASE, "profiles": {"x": "gpu"}}, "x", "lab.profiles.x must be a mapping"),
    ({**BASE, "profiles": ["gpu"]}, None, "lab.profiles must be a mapping"),
    ({**BASE, "profiles": {"x": {"profiles": {}}}}, "x", "lab.profiles.x.profiles is not a setting"),
])
def test_bad_profiles_are_one_line(data, profile, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        LabSettings.from_config(data, profile=profile)


@pytest.mark.parametrize("extra,words", [(["=x"], "KEY=VALUE"), (["two words=x"], "KEY=VALUE"),
                                         (["output=/tmp/x"], "set by the tool")])
def test_bad_sbatch_options_on_the_command_line(extra, words):
    with pytest.raises(ConfigError, match=words):
        LabSettings.from_config(BASE, sbatch=sbatch_options({}, extra))


def _script(env: dict) -> str:
    return batch_script.render(LabSettings.from_config({"login": "l", "env": env}), "/h/.fabfile-lab/x-0011aabb")


def test_conda_is_activated_the_way_a_batch_shell_needs():
    script = _script({"conda": "~/envs/lab", "modules": ["anaconda3/2024"]})
    hook = script.index('eval "$(conda shell.bash hook)"')
    assert script.index("module load anaconda3/2024") < hook < script.index('conda activate "$HOME"/envs/lab')
    assert script.index("set +u") < hook < script.index("set -u\n# --- end of setup")
    assert "/etc/profile.d/modules.sh" in script  # `module` is defined first where the batch shell lacks it


@pytest.mark.parametrize("env,expect", [
    ({"venv": "/opt/venvs/lab"}, ". /opt/venvs/lab/bin/activate || lab_fail"),
    ({"uv": "~/proj"}, '. "$HOME"/proj/.venv/bin/activate || lab_fail'),
    ({"pixi": "/p/proj"}, 'eval "$(pixi shell-hook --manifest-path /p/proj)"'),
    ({"mamba": "lab"}, 'eval "$(mamba shell hook --shell bash)"'),
    ({"init": "/etc/profile"}, ". /etc/profile || lab_fail"),
    ({"venv": "/a b/c"}, ". '/a b/c'/bin/activate"),
])
def test_each_environment_kind(env, expect):
    script = _script(env)
    assert expect in script
    assert script.index(expect) < script.index("LAB_PROGRAM=$(command -v jupyter)")


def test_rendered_scripts_are_valid_bash():
    for env in ({"conda": "x", "modules": ["a", "b/1"], "init": "/i"}, {"pixi": "/p"}, {"uv": "~"}, {}):
        proc = subprocess.run(["bash", "-n"], input=_script(env), text=True, capture_output=True, check=False)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("env,words", [
    ("myenv", "lab.env must be a mapping"),
    ({"conda": "a", "venv": "/b"}, "conda and venv: choose one"),
    ({"docker": "x"}, "lab.env.docker is unknown"),
    ({"modules": "python"}, "lab.env.modules must be a list"),
    ({"venv": ["a"]}, "lab.env.venv must be a single path"),
])
def test_bad_environments_are_one_line(env, words):
    with pytest.raises(ConfigError, match=words):
        environment.check(env)


def test_the_batch_scripts_own_error_line_is_what_the_user_sees():
    record = LabRecord("n", {}, "42", "/d", "t", "compute")
    log = "fabfile-lab: job 42 on c1\nfabfile-lab: error: `jupyter` not found after setup (PATH=/usr/bin)\n"
    assert ended_early(record, log) == ("job 42 ended before Jupyter answered: `jupyter` not found after setup "
                                        "(PATH=/usr/bin) -- fix lab.env or lab.setup.")
    assert "log tail: a | b" in ended_early(record, "a\nb\n")


def test_queue_line_and_clock():
    now = datetime(2026, 11, 27, 13, 0)
    info = slurm.JobInfo("42", "PENDING", "Priority", start="2026-11-27T14:05:00")
    assert line(info, 42, now) == "job 42: pending (Priority), 0:42 waited, starts ~14:05"
    assert expected_start("2026-11-28T09:00:00", now) == "11-28 09:00"
    assert expected_start("N/A", now) == ""
    assert (clock(5), clock(725), clock(3729)) == ("0:05", "12:05", "1:02:09")


def test_a_plain_stream_gets_one_line_per_change():
    out = io.StringIO()
    display = QueueDisplay(out, live=False)
    for info in [slurm.JobInfo("7", "PENDING", "Priority")] * 3 + [slurm.JobInfo("7", "RUNNING", node="c1")] * 2:
        display(info)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("job 7: pending (Priority)") and "running on c1" in lines[1]


def test_squeue_lines():
    assert slurm.parse_line("12|PENDING|Priority||1:00:00|2026-11-27T14:05:00|N/A") == \
        slurm.JobInfo("12", "PENDING", "Priority", "", "1:00:00", "2026-11-27T14:05:00", "")
    assert slurm.parse_line("slurm_load_jobs error: Invalid job id specified") is None


def test_lab_json_is_parsed_and_foreign_files_skipped():
    meta = lab_dir.LabMeta("a", "12", "compute", 1.0, "0.1", "/h/.fabfile-lab/a-0011aabb")
    text = "\n".join([meta.to_json(), "{broken", '{"name": "x"}',
                      lab_dir.LabMeta("b", "13", "login", 2.0, "0.1", "/etc").to_json()])
    assert lab_dir.parse(text) == [meta]
    assert "token" not in meta.to_json()


@pytest.mark.parametrize("exc,code", [(ConfigError("x"), 2), (JobEnded("x"), 3), (WaitTimeout("x"), 4),
                                      (ConnectError("x"), 1), (LabError("x"), 1)])
def test_exit_codes(exc, code):
    assert exit_code(exc) == code


def test_ide_entries_chain_every_hop_with_proxyjump(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host jump\n    HostName 10.0.0.1\n    User me\n\n"
                      "Host login\n    HostName 10.0.0.2\n    User me\n    ProxyJump jump\n")
    settings = LabSettings.from_config({"login": "login", "ssh_config": str(config), "state_dir": str(tmp_path)})
    record = LabRecord("nb", {}, "42", "/d", "t", "compute", node="c1", node_addr="10.0.1.5")
    text = ide.ssh_entries(settings, record)
    hosts = [ln.split()[1] for ln in text.splitlines() if ln.startswith("Host ")]
    assert len(hosts) == 3 and hosts[-1] == "fabfile-lab-nb"
    assert f"ProxyJump {hosts[0]}" in text and f"ProxyJump {hosts[1]}" in text
    assert "HostName 10.0.1.5" in text and "ControlPath " in text and "StrictHostKeyChecking yes" in text
    proc = subprocess.run(["ssh", "-F", "/dev/stdin", "-G", "fabfile-lab-nb"], input=text, text=True,
                          capture_output=True, check=False)
    assert proc.returncode == 0 and f"proxyjump {hosts[1]}" in proc.stdout.lower()


def test_invoke_yaml_lists_every_lab_key_with_its_default():
    from pathlib import Path

    import yaml

    from fabfile_lib.settings import DEFAULTS
    from fabfile_lib.tasks.lab import ns

    documented = yaml.safe_load((Path(__file__).parent.parent / "invoke.yaml").read_text())["lab"]
    expected = {k: v for k, v in DEFAULTS.items() if k != "sbatch"}  # sbatch: see the comment in invoke.yaml
    assert documented == expected
    assert ns.configuration()["lab"] == expected


def test_a_start_after_a_long_wait_is_notified_once(monkeypatch):
    import time as _time

    from fabfile_lib.tasks import _progress

    sent = []
    monkeypatch.setattr(_progress, "notify", lambda title, text: sent.append((title, text)) or True)
    slow = QueueDisplay(io.StringIO(), live=False)
    slow.began = _time.monotonic() - 31
    slow(slurm.JobInfo("7", "PENDING", "Priority"))
    for _ in range(2):
        slow(slurm.JobInfo("7", "RUNNING", node="c1"))
    quick = QueueDisplay(io.StringIO(), live=False)
    quick(slurm.JobInfo("8", "RUNNING", node="c1"))
    assert sent == [("JupyterLab job started", "job 7 runs on c1 after 0:31")]
