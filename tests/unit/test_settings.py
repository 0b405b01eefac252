"""Settings: types, validation, profiles and the options of one run."""

from __future__ import annotations

import pytest

from fabfile_lib.errors import (
    ConfigError,
    LabError,
)
from fabfile_lib.settings import LabSettings, sbatch_options

BASE = {"login": "login", "sbatch": {"partition": "debug", "time": "01:00:00", "comment": "from config"},
        "setup": ["echo base"],
        "profiles": {"gpu": {"sbatch": {"partition": "gpu", "gpus": 1}, "setup": ["module load cuda"],
                             "via": "login"},
                     "other": {"login": "other-login", "remote_dir": "/scratch/me"}}}


def _settings(**kw) -> LabSettings:
    return LabSettings.from_config({"login": "login", **kw})


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


def test_environment_strings_are_taken_for_numbers_and_booleans():
    s = _settings(wait_timeout="30", local_port="8888", accept_new_host_keys="true")
    assert (s.wait_timeout, s.local_port, s.accept_new_host_keys) == (30.0, 8888, True)


@pytest.mark.parametrize("kw,words", [
    ({"transport": "ssh"}, "lab.transport"),
    ({"persist": "forever"}, "lab.persist"),
    ({"keepalive": 0}, "lab.keepalive"),
    ({"ssh_config": "/no/such/config"}, "does not exist"),
])
def test_bad_transport_settings_are_one_line(kw, words):
    with pytest.raises(LabError, match=words) as exc:
        LabSettings.from_config({"login": "login", **kw})
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("value,expected", [("8h", "8h"), (0, "0"), (False, "0"), ("30m", "30m"), (3600, "3600")])
def test_persist_forms(value, expected):
    assert LabSettings.from_config({"login": "login", "persist": value}).persist == expected


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
