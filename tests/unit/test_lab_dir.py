"""The lab's directory on the cluster: lab.json checked field by field, the rm -rf guard."""

from __future__ import annotations

import json

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
