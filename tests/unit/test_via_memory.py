"""lab.via auto: the order of the modes, and what worked on a cluster remembered."""

from __future__ import annotations

from fabfile_lib import via_memory
from fabfile_lib.settings import LabSettings


def _settings(tmp_path, via="auto", login="l"):
    return LabSettings.from_config({"login": login, "via": via, "state_dir": str(tmp_path), "ssh_config": ""})


def test_auto_tries_compute_login_reverse_then_puts_what_worked_first(tmp_path):
    auto = _settings(tmp_path)
    assert via_memory.candidates(auto) == ["compute", "login", "reverse"]
    via_memory.remember(auto, "reverse")
    assert via_memory.candidates(auto) == ["reverse", "compute", "login"]
    assert via_memory.candidates(_settings(tmp_path, login="other")) == ["compute", "login", "reverse"]
    assert oct((tmp_path / "clusters.json").stat().st_mode & 0o777) == "0o600"


def test_a_mode_asked_for_is_the_only_one_and_is_not_remembered(tmp_path):
    fixed = _settings(tmp_path, via="login")
    assert via_memory.candidates(fixed) == ["login"]
    via_memory.remember(fixed, "login")
    assert not (tmp_path / "clusters.json").exists()


def test_a_damaged_memory_is_no_memory(tmp_path):
    (tmp_path / "clusters.json").write_text('{"x": "not a mapping"} trailing')
    assert via_memory.candidates(_settings(tmp_path)) == ["compute", "login", "reverse"]
