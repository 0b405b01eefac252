"""The lab's directory on the cluster: lab.json checked field by field, the rm -rf guard."""

from __future__ import annotations

import json
import os

import pytest

from fabfile_lib import lab_dir

BASE = "/h/.fabfile-lab"
GOOD = lab_dir.LabMeta("a", "12", "compute", 1.0, "0.1", f"{BASE}/a-0011aabb", login_host="login2")


def test_lab_json_is_parsed_and_foreign_files_skipped():
    text = "\n".join([GOOD.to_json(), "{broken", '{"name": "x"}',
                      lab_dir.LabMeta("b", "13", "login", 2.0, "0.1", "/etc").to_json()])
    assert lab_dir.parse(text, BASE) == [GOOD]
    assert "token" not in GOOD.to_json()


@pytest.mark.parametrize("change", [
    {"job_id": 12}, {"job_id": "12\n"}, {"job_id": "12;id"}, {"name": ["a"]}, {"created": "yesterday"},
    {"remote_dir": f"{BASE}/../a-0011aabb"}, {"remote_dir": f"{BASE}/a-0011aabb\n"}, {"remote_dir": "/etc/a-0011aabb"},
    {"remote_dir": f"{BASE}/b-0011aabb"}, {"remote_dir": f"{BASE}/x/a-0011aabb"}, {"remote_dir": f"{BASE}//a-0011aabb"},
    {"url_path": "@evil.example/x"}, {"url_path": "//evil.example/x"}, {"url_path": "/lab?x=1"}, {"via": "ssh"},
    {"login_host": "n1'$(id)'"}, {"login_host": "-oProxyCommand=x"}, {"reverse_target": "a b"},
])
def test_a_forged_lab_json_is_skipped_and_the_others_still_list(change):
    forged = json.dumps({**json.loads(GOOD.to_json()), **change})
    assert lab_dir.parse("\n".join([forged, GOOD.to_json()]), BASE) == [GOOD]


@pytest.mark.parametrize("path,ok", [
    ("/home/u/.fabfile-lab/default-0011aabb", True),
    ("/scratch/u/labs/my.lab_2-deadbeef", True),
    ("/home/u", False), ("/", False), ("~/.fabfile-lab/x-0011aabb", False),
    ("/home/u/.fabfile-lab/x-0011aabb/..", False), ("/home/u/.fabfile-lab/x-0011AABB", False),
    ("/home/u/.fabfile-lab/-0011aabb", False), ("relative/x-0011aabb", False),
    ("/home/u/.fabfile-lab/x-0011aabb\n", False), ("/home/u/../x-0011aabb", False), ("/a//b-0011aabb", False),
])
def test_rm_rf_is_only_ever_given_a_directory_the_tool_made(path, ok):
    assert lab_dir.is_lab_dir(path) == ok


def test_the_guard_also_wants_the_configured_base():
    assert lab_dir.is_lab_dir("/home/u/.fabfile-lab/x-0011aabb", "/home/u/.fabfile-lab")
    assert not lab_dir.is_lab_dir("/home/u/other/x-0011aabb", "/home/u/.fabfile-lab")


class _LocalShell:
    """A login node that is this machine: the command runs under ``sh -c`` with the data on its stdin."""

    host = "here"

    def __init__(self):
        self.commands: list[str] = []

    def run(self, command, *, hide=True, warn=True, in_stream=False, timeout=None, data=None):
        import subprocess

        from fabfile_lib.master_shell import Result, text_of

        self.commands.append(command)
        proc = subprocess.run(["sh", "-c", command], input=data or b"", capture_output=True, timeout=30, check=False)
        return Result(command, text_of(proc.stdout), text_of(proc.stderr), proc.returncode)


class _FeedHops:
    def __init__(self):
        from fabfile_lib.settings import LabSettings

        self.settings, self.shell = LabSettings.from_config({"login": "l"}), _LocalShell()

    def feeder(self):
        return self.shell


def test_the_directory_its_files_and_the_command_are_one_command_with_the_secret_on_stdin(tmp_path):
    import stat

    hops, base, secret = _FeedHops(), tmp_path / "labs", "s3cret-token-value"
    where = base / "lab-0011aabb"
    files = {lab_dir.TOKEN_FILE: secret, lab_dir.SCRIPT: "#!/bin/bash\necho hi\n", lab_dir.META: "{}"}
    result = lab_dir.create(hops, str(base), str(where), files, then="pwd; ls")
    assert result.exited == 0 and result.stdout.split() == [str(where), "lab.json", "launch.sh", "token"]
    assert (where / lab_dir.TOKEN_FILE).read_text() == secret
    assert stat.S_IMODE(base.stat().st_mode) == 0o700 and stat.S_IMODE(where.stat().st_mode) == 0o700
    assert {stat.S_IMODE((where / name).stat().st_mode) for name in files} == {0o600}
    assert len(hops.shell.commands) == 1 and secret not in hops.shell.commands[0]
    lab_dir.write(hops, str(where / lab_dir.META), '{"job_id": "7"}')
    assert (where / lab_dir.META).read_text() == '{"job_id": "7"}' and secret not in hops.shell.commands[1]


def test_a_base_that_exists_keeps_its_mode_and_what_cannot_be_made_says_which_directory(tmp_path):
    import stat

    hops, base = _FeedHops(), tmp_path / "project"
    base.mkdir(mode=0o750)
    base.chmod(0o750)
    assert lab_dir.create(hops, str(base), str(base / "a-0011aabb"), {"token": "t"}, then="true").exited == 0
    assert stat.S_IMODE(base.stat().st_mode) == 0o750  # a group's project directory is left as it is
    with pytest.raises(lab_dir.LabError, match=r"cannot create .*/a-0011aabb on the login node"):
        lab_dir.create(hops, str(base), str(base / "a-0011aabb"), {"token": "t"}, then="true")  # not new
    (tmp_path / "file").write_text("")
    with pytest.raises(lab_dir.LabError, match=r"cannot create .*/file on the login node"):
        lab_dir.create(hops, str(tmp_path / "file"), str(tmp_path / "file" / "b-0011aabb"), {}, then="true")
    assert lab_dir.create(hops, str(base), str(base / "c-0011aabb"), {}, then="exit 3").exited == 3  # then's own
    base.chmod(0o2770)  # setgid, as a group's project directory often is: the lab's own is 0700 all the same
    assert lab_dir.create(hops, str(base), str(base / "d-0011aabb"), {}, then="true").exited == 0
    assert stat.S_IMODE((base / "d-0011aabb").stat().st_mode) == 0o700


class _ShellHops:
    def __init__(self):
        from fabfile_lib.settings import LabSettings

        self.settings, self.local = LabSettings.from_config({"login": "l"}), _LocalShell()

    def shell(self):
        return self.local


def _look(where, **kw):
    return lab_dir.look(_ShellHops(), str(where), **kw)


def test_a_look_says_what_the_lab_s_directory_holds_in_one_command(tmp_path):
    where = tmp_path / "lab-0011aabb"
    assert _look(where) == lab_dir.Look()  # not there (yet)
    where.mkdir()
    assert _look(where) == lab_dir.Look()
    (where / "node").write_text("c1\n")
    (where / "runtime").mkdir()
    assert _look(where) == lab_dir.Look("c1")
    (where / "runtime" / "app.json").write_text('{"port": 0, "sock": "/tmp/fl-x/app.sock", "hostname": ""}\n')
    assert _look(where).runtime == {"port": 0, "sock": "/tmp/fl-x/app.sock", "hostname": ""}
    assert _look(where, node="c1").node == "c1"  # known: not read again
    (where / "ended").write_text("0\n")
    assert _look(where).ended


@pytest.mark.parametrize("node", ["c1\nevil", "c1\rother", "$(id)", "-oProxyCommand=x",
                                  'fe80::1%h\nProxyCommand sh -c "touch x"'])
def test_a_forged_node_file_stays_forged(tmp_path, node):
    where = tmp_path / "lab-0011aabb"
    where.mkdir()
    (where / "node").write_text(node)
    seen = _look(where)
    assert seen.node == "" and seen.forged_node == lab_dir.untrusted.quoted(node, 40)  # shown as it is
    with pytest.raises(lab_dir.LabError, match="not a host name"):
        seen.checked_node(str(where))


def test_a_node_or_runtime_file_that_is_no_regular_file_is_not_read(tmp_path):
    where = tmp_path / "lab-0011aabb"
    (where / "runtime").mkdir(parents=True)
    (tmp_path / "elsewhere").write_text("c9\n")
    os.symlink(tmp_path / "elsewhere", where / "node")
    os.mkfifo(where / "runtime" / "app.json")  # a FIFO would never end
    seen = _look(where)
    assert seen.node == "" and seen.runtime is None


def test_a_file_and_the_log_s_tail_are_read_by_one_command_regular_files_only_and_bounded(tmp_path):
    hops, where = _ShellHops(), tmp_path / "lab-0011aabb"
    assert lab_dir.read(hops, str(where), "token") is None and lab_dir.log_tail(hops, str(where)) == ""
    where.mkdir()
    (where / "token").write_text("s3cret\n")
    assert lab_dir.read(hops, str(where), "token") == "s3cret\n"
    assert lab_dir.read(hops, str(where), "token", limit=3) == "s3c"
    (where / "elsewhere").symlink_to(where / "token")
    assert lab_dir.read(hops, str(where), "elsewhere") is None  # a link may point anywhere
    os.mkfifo(where / "fifo")
    assert lab_dir.read(hops, str(where), "fifo") is None  # would never end
    (where / lab_dir.JOB_LOG).write_text("".join(f"line {i}\n" for i in range(100)))
    assert lab_dir.log_tail(hops, str(where), lines=2) == "line 98\nline 99"
    assert lab_dir.log_tail(hops, str(where), lines=50, limit=12) == " 98\nline 99"  # the last bytes only


def test_a_look_waits_on_the_login_node_for_the_job_s_next_sign_and_no_longer(tmp_path):
    import threading
    import time

    where = tmp_path / "lab-0011aabb"
    where.mkdir()
    began = time.monotonic()
    assert _look(where, step=0.05, up_to=0.3) == lab_dir.Look()  # nothing came: back after up_to
    assert 0.25 <= time.monotonic() - began < 3
    threading.Timer(0.3, lambda: (where / "node").write_text("c1\n")).start()
    began = time.monotonic()
    assert _look(where, step=0.05, up_to=20).node == "c1"  # the node: back at once
    assert time.monotonic() - began < 5
    (where / "runtime").mkdir()
    app = where / "runtime" / "app.json"
    threading.Timer(0.3, lambda: app.write_text('{"port": 8888}')).start()
    began = time.monotonic()
    assert _look(where, node="c1", step=0.05, up_to=20).runtime == {"port": 8888}  # the node known: the app
    assert time.monotonic() - began < 5
    threading.Timer(0.3, lambda: (where / "ended").write_text("1\n")).start()
    app.unlink()
    assert _look(where, node="c1", step=0.05, up_to=20).ended  # or the end, whichever comes first


def _login_node_path(tmp_path, with_bash: bool) -> str:
    """A PATH for a login node with (or without) bash, whose ``sleep`` notes each pause it makes."""
    import shutil

    bin_dir = tmp_path / ("bin-bash" if with_bash else "bin-sh")
    bin_dir.mkdir()
    for tool in ("sh", "head", "od", "tr", "cat", *(("bash",) if with_bash else ())):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    sleep = shutil.which("sleep")
    (bin_dir / "sleep").write_text(f'#!{shutil.which("sh")}\necho "$1" >> {bin_dir}/sleeps\nexec {sleep} "$1"\n')
    (bin_dir / "sleep").chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize("with_bash", [True, False])
def test_a_wait_with_bash_starts_no_process_per_look_and_plain_sh_looks_less_often(tmp_path, monkeypatch, with_bash):
    import threading
    import time

    path = _login_node_path(tmp_path, with_bash)
    monkeypatch.setenv("PATH", path)
    where = tmp_path / "lab-0011aabb"
    (where / "runtime").mkdir(parents=True)
    (where / "node").write_text("c1\n")
    threading.Timer(0.5, lambda: (where / "runtime" / "app.json").write_text('{"port": 8888}')).start()
    began = time.monotonic()
    assert _look(where, node="c1", step=0.01, up_to=20).runtime == {"port": 8888}
    assert time.monotonic() - began < 5
    sleeps = (tmp_path / ("bin-bash" if with_bash else "bin-sh") / "sleeps")
    if with_bash:
        assert not sleeps.exists()  # each pause a read with a timeout: no process
    else:
        assert set(sleeps.read_text().split()) == {"0.05"} and len(sleeps.read_text().split()) <= 15
    assert _look(where, step=0.02, up_to=0.3).node == "c1"  # the rest of the look is the same in both
