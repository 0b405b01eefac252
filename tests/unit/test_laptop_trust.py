"""The laptop's trust policies, fast: which files configure the tool and for which keys, what an allowed
file is, what a background Python process inherits, the host and token shapes, sbatch's abbreviations."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from fabfile_lib import browser, config_trust, file_trust, python_child, untrusted
from fabfile_lib.errors import ConfigError
from fabfile_lib.settings import LabSettings, reserved_option

root_only = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
OTHER_UID = 4242


@pytest.fixture(autouse=True)
def _own_state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    config_trust._READ.clear()


# -- who may have written a file ------------------------------------------------------------------

def test_a_file_of_mine_in_directories_of_mine_is_trusted(tmp_path):
    (tmp_path / "f.yaml").write_text("lab: {}\n")
    assert file_trust.untrusted_because(tmp_path / "f.yaml") == ""


def test_a_group_or_world_writable_parent_is_not(tmp_path):
    work = tmp_path / "shared" / "proj"
    work.mkdir(parents=True)
    (work / "f.yaml").write_text("lab: {}\n")
    (tmp_path / "shared").chmod(0o777)
    assert "directory" in file_trust.untrusted_because(work / "f.yaml") and "others" in \
        file_trust.untrusted_because(work / "f.yaml")
    (tmp_path / "shared").chmod(0o775)
    assert "its group" in file_trust.untrusted_because(work / "f.yaml")


def test_a_writable_file_is_not(tmp_path):
    (tmp_path / "f.yaml").write_text("lab: {}\n")
    (tmp_path / "f.yaml").chmod(0o666)
    assert file_trust.untrusted_because(tmp_path / "f.yaml").startswith("file ")


@root_only
def test_another_users_file_or_directory_is_not_and_a_sticky_root_directory_is(tmp_path):
    (tmp_path / "f.yaml").write_text("lab: {}\n")
    os.chown(tmp_path / "f.yaml", OTHER_UID, OTHER_UID)
    assert "owned by another user (uid 4242)" in file_trust.untrusted_because(tmp_path / "f.yaml")
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    (sticky / "mine.yaml").write_text("lab: {}\n")
    assert file_trust.untrusted_because(sticky / "mine.yaml") == ""  # as /tmp: nobody can replace it
    theirs = sticky / "theirs"
    theirs.mkdir()
    os.chown(theirs, OTHER_UID, OTHER_UID)
    assert "directory" in file_trust.untrusted_because(theirs / "f.yaml")  # not made yet: who could make it
    assert file_trust.untrusted_because(sticky, owners={file_trust.ROOT}) == ""


@root_only
def test_a_link_counts_as_itself_and_as_where_it_leads(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (target / "f.yaml").write_text("lab: {}\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert file_trust.untrusted_because(link / "f.yaml") == ""
    os.chown(target, OTHER_UID, OTHER_UID)
    assert "4242" in file_trust.untrusted_because(link / "f.yaml")
    os.chown(target, 0, 0)
    os.chown(link, OTHER_UID, OTHER_UID, follow_symlinks=False)
    assert file_trust.untrusted_because(link / "f.yaml").startswith("link ")


def test_without_user_ids_nothing_can_be_checked(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "geteuid")
    (tmp_path / "f.yaml").write_text("lab: {}\n")
    (tmp_path / "f.yaml").chmod(0o666)
    assert file_trust.me() is None and file_trust.untrusted_because(tmp_path / "f.yaml") == ""


# -- which keys each level gives ------------------------------------------------------------------

HOSTILE = """\
lab:
  ssh_config: evil_ssh_config
  login: elsewhere
  jump: attacker
  accept_new_host_keys: true
  transport: paramiko
  setup: ["touch /tmp/m"]
  command: "sh -c id"
  env: {venv: /tmp/evil}
  state_dir: ./records
  remote_dir: /tmp/shared
  reverse_target: attacker
  name: team
  via: reverse
  notebook_dir: ~/project
  sbatch: {partition: gpu, time: "04:00:00", chd: /tmp, output: /tmp/x, input: /etc/shadow}
  profiles: {big: {sbatch: {mem: 64G}, login: other, setup: ["id"]}}
tasks: {executor_class: evil.Executor}
run: {shell: /tmp/evil-shell}
"""


def _project(tmp_path: Path, text: str = HOSTILE) -> Path:
    path = tmp_path / "repo" / "fabfile-lab.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_a_project_file_gives_only_data_keys(tmp_path):
    found = config_trust.read(_project(tmp_path), "project")
    assert not found.allowed and not found.skipped
    lab = found.data["lab"]
    assert set(lab) == {"name", "via", "notebook_dir", "sbatch", "profiles"}
    assert lab["sbatch"] == {"partition": "gpu", "time": "04:00:00"}
    assert lab["profiles"] == {"big": {"sbatch": {"mem": "64G"}}}
    assert set(found.data) == {"lab"}
    for key in ("tasks", "run", "lab.ssh_config", "lab.login", "lab.jump", "lab.accept_new_host_keys",
                "lab.transport", "lab.setup", "lab.command", "lab.env", "lab.state_dir", "lab.remote_dir",
                "lab.reverse_target", "lab.sbatch.chd", "lab.sbatch.output", "lab.sbatch.input",
                "lab.profiles.big.login", "lab.profiles.big.setup"):
        assert key in found.refused, key
    line = found.line("fabfile-lab config allow X")
    assert "\n" not in line and "refused" in line and "lab.setup" in line and "config allow X" in line
    LabSettings.from_config({"login": "mine", **lab})  # what was taken loads


@pytest.mark.parametrize("level", ["user", "system"])
def test_the_users_and_the_system_file_give_every_key(tmp_path, level):
    found = config_trust.read(_project(tmp_path), level)
    assert found.data["lab"]["setup"] == ["touch /tmp/m"] and "tasks" in found.data and not found.refused


def test_an_allowed_file_gives_every_key_until_it_changes(tmp_path):
    path = _project(tmp_path)
    config_trust.allow(path)
    allowed = config_trust.allowed_path()
    assert oct(allowed.stat().st_mode & 0o777) == "0o600" and oct(allowed.parent.stat().st_mode & 0o777) == "0o700"
    found = config_trust.read(path, "project")
    assert found.allowed and found.data["lab"]["login"] == "elsewhere" and not found.refused
    path.write_text(HOSTILE + "# one more line\n")
    again = config_trust.read(path, "project")
    assert not again.allowed and "lab.login" in again.refused


def test_an_allowed_file_is_recorded_by_its_path_too(tmp_path):
    config_trust.allow(_project(tmp_path))
    other = tmp_path / "other" / "fabfile-lab.yaml"
    other.parent.mkdir()
    other.write_text(HOSTILE)  # the same content elsewhere is another file
    assert not config_trust.read(other, "project").allowed


def test_a_file_nobody_else_could_write_is_the_only_kind_allowed(tmp_path):
    path = _project(tmp_path)
    path.chmod(0o666)
    with pytest.raises(ConfigError, match="writable by others"):
        config_trust.allow(path)
    found = config_trust.read(path, "project")
    assert found.data is None and "writable by others" in found.skipped
    assert found.line("x").startswith("warning: skipped ")


def test_a_file_that_is_not_yaml_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 2\)"):
        config_trust.read(_project(tmp_path, "lab: [\n"), "project")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        config_trust.read(_project(tmp_path, "- a\n"), "user")


def test_no_file_is_nothing_to_say(tmp_path):
    found = config_trust.read(tmp_path / "none.yaml", "system")
    assert found.data is None and found.skipped == "" and config_trust.reads() == []


# -- background processes --------------------------------------------------------------------------

def test_a_background_python_never_puts_the_working_directory_first():
    argv = python_child.argv("fabfile_lib.watcher", "lab", "/state")
    assert argv[0] == sys.executable and argv[-4:] == ["-m", "fabfile_lib.watcher", "lab", "/state"]
    assert ("-P" in argv) == (sys.version_info >= (3, 11))


def test_a_background_python_gets_the_environment_it_needs_only():
    env = python_child.environment({"HOME": "/home/u", "SSH_AUTH_SOCK": "/run/agent", "LC_ALL": "C",
                                    "XDG_STATE_HOME": "/s", "PATH": ".:bin:/usr/bin::/bin", "PYTHONPATH": "/evil",
                                    "PYTHONSTARTUP": "/evil.py", "LD_PRELOAD": "/evil.so", "PYTHONHOME": "/e",
                                    "FABFILE_LAB_LOGIN": "x", "FLAB_COMMAND_STYLE": "fabfile-lab"})
    assert env["PATH"] == "/usr/bin:/bin"  # no entry relative to wherever the child runs
    assert env["PYTHONPATH"] == python_child.package_root() and env["PYTHONSAFEPATH"] == "1"
    for gone in ("PYTHONSTARTUP", "LD_PRELOAD", "PYTHONHOME", "FABFILE_LAB_LOGIN"):
        assert gone not in env
    for kept in ("HOME", "SSH_AUTH_SOCK", "LC_ALL", "XDG_STATE_HOME", "FLAB_COMMAND_STYLE"):
        assert kept in env
    assert (Path(python_child.package_root()) / "fabfile_lib" / "watcher.py").is_file()
    assert env["MALLOC_ARENA_MAX"] == "2"  # a thread per lab: not an allocator arena per thread


# -- what the cluster says ---------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["fe80::1%eth0", "fe80::1%h\nProxyCommand sh -c id", "fe80::1%$(id)", "::1%lo",
                                 "[fe80::1]", "fe80::1 ", "::1\n", "fe80::1%'x'", "1::2::3", "fe80::g"])
def test_no_scope_id_no_brackets_no_blanks_in_an_ipv6_host(bad):
    assert not untrusted.host(bad)


@pytest.mark.parametrize("good", ["::1", "fe80::1", "2001:db8::5", "::ffff:10.0.0.1", "10.0.0.1"])
def test_plain_ipv6_and_ipv4_addresses_are_hosts(good):
    assert untrusted.host(good)


def test_quoted_cluster_text_stays_on_one_line():
    text = untrusted.quoted("fe80::1%h\nProxyCommand sh -c 'id'" + "x" * 200)
    assert "\n" not in text and text.endswith("...") and len(text) < 80


def test_the_token_has_the_shape_the_tool_makes():
    import secrets

    assert untrusted.token(secrets.token_urlsafe(32))
    for bad in ("", "short", "x</script><script>alert(1)</script>" + "a" * 20, "a" * 42 + "\n", "a" * 42 + "\x1b[2J",
                "a" * 42 + "\r\nSet-Cookie: x", "a" * 129, "a" * 40 + " b", None, 42):
        assert not untrusted.token(bad), bad


def test_the_redirect_page_script_cannot_be_closed_by_what_it_embeds():
    literal = browser.script_string("http://127.0.0.1:1/lab?token=x</script><script>alert(1)</script>&y")
    assert "<" not in literal and ">" not in literal and "&" not in literal
    assert json.loads(literal).endswith("</script>&y")  # the same text, escaped


@pytest.mark.parametrize("key,reserved", [("err", "error"), ("chd", "chdir"), ("expo", "export"), ("outp", "output"),
                                          ("o", "output"), ("export-f", "export-file"), ("parsable", "parsable"),
                                          ("wr", "wrap"), ("partition", ""), ("part", ""), ("exclusive", ""),
                                          ("time", ""), ("comment", "")])
def test_reserved_sbatch_options_count_by_abbreviation(key, reserved):
    assert reserved_option(key) == reserved
    if reserved:
        with pytest.raises(ConfigError, match="set by the tool itself"):
            LabSettings.from_config({"login": "x", "sbatch": {key: "/tmp"}})


# -- every field that can hold a host --------------------------------------------------------------

SCOPED = "fe80::1%h\nProxyCommand sh -c 'touch /tmp/pwned'"


def test_every_host_of_a_record_is_checked_where_it_is_read(tmp_path):
    import dataclasses

    from fabfile_lib import LabError, state

    record = state.LabRecord("a", {"login": "l"}, "42", "/h/.fabfile-lab/a-0011aabb", "t" * 43, "compute")
    hosts = [f.name for f in dataclasses.fields(record) if f.name in state.HOST_FIELDS]
    assert sorted(hosts) == sorted(state.HOST_FIELDS) == ["login_host", "node", "node_addr", "remote_host"]
    for key in hosts:
        state.save(tmp_path, dataclasses.replace(record, **{key: "fe80::1"}))
        assert getattr(state.load(tmp_path, "a"), key) == "fe80::1"
        path = state.path_for(tmp_path, "a")
        path.write_text(json.dumps({**json.loads(path.read_text()), key: SCOPED}))
        with pytest.raises(LabError, match=f"damaged.*{key}") as err:
            state.load(tmp_path, "a")
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("key,value", [("login_host", SCOPED), ("login_host", "fe80::1%eth0"),
                                       ("reverse_target", SCOPED), ("reverse_target", "x\nProxyCommand y@login"),
                                       ("reverse_target", "u@fe80::1%x")])
def test_every_host_of_lab_json_is_checked_where_it_enters(key, value):
    from fabfile_lib import lab_dir

    good = lab_dir.LabMeta("a", "12", "reverse", 1.0, "0.1", "/h/.fabfile-lab/a-0011aabb", login_host="login2",
                           reverse_target="me@login2")
    assert lab_dir.meta_of(json.loads(good.to_json()), "/h/.fabfile-lab") == good
    with pytest.raises(ValueError, match=key):
        lab_dir.meta_of({**json.loads(good.to_json()), key: value}, "/h/.fabfile-lab")


def test_a_pinned_login_node_or_a_node_address_that_is_no_host_is_refused_before_any_connection():
    from fabfile_lib import LabError
    from fabfile_lib.hops import Hops

    settings = LabSettings.from_config({"login": "l", "ssh_config": ""})
    with pytest.raises(LabError, match="not a host name") as err:
        Hops(settings, pin=SCOPED, transport="paramiko")
    assert "\n" not in str(err.value)
    with pytest.raises(LabError, match="not a host name"):
        Hops(settings, transport="paramiko").node_spec(SCOPED)


def test_cluster_text_in_a_message_shows_control_characters_as_escapes():
    from fabfile_lib import lab
    from fabfile_lib.state import LabRecord

    record = LabRecord("a", {}, "42", "/d", "t" * 43, "compute")
    why = lab.ended_early(record, "fabfile-lab: error: bad\x1b[2J\x07\n")
    assert "\x1b" not in why and "\x07" not in why and "bad\\x1b[2J\\x07" in why
    tail = lab.ended_early(record, "one\x1b]0;title\x07\ntwo\rthree\n")
    assert tail.isprintable() and "\\x1b]0;title\\x07" in tail
    assert untrusted.printable("ok text") == "ok text"


def test_every_laptop_path_comes_from_paths_py(tmp_path, monkeypatch):
    from fabfile_lib import paths, user_config
    from fabfile_lib.settings import state_path

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # not absolute: the spec says the default
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_config.path() == tmp_path / "c" / "fabfile-lab" / "config.yaml"
    assert state_path("") == paths.state_dir() == tmp_path / "home" / ".local" / "state" / "fabfile-lab"
    assert config_trust.allowed_path() == paths.state_dir() / "allowed.json"
    assert state_path("~/elsewhere") == tmp_path / "home" / "elsewhere"
    assert config_trust.SYSTEM_FILE == paths.SYSTEM_CONFIG
