"""The lab's directory on the cluster: lab.json, the rm -rf guard."""

from __future__ import annotations

import pytest

from fabfile_lib import lab_dir


def test_lab_json_is_parsed_and_foreign_files_skipped():
    meta = lab_dir.LabMeta("a", "12", "compute", 1.0, "0.1", "/h/.fabfile-lab/a-0011aabb")
    text = "\n".join([meta.to_json(), "{broken", '{"name": "x"}',
                      lab_dir.LabMeta("b", "13", "login", 2.0, "0.1", "/etc").to_json()])
    assert lab_dir.parse(text) == [meta]
    assert "token" not in meta.to_json()


@pytest.mark.parametrize("path,ok", [
    ("/home/u/.fabfile-lab/default-0011aabb", True),
    ("/scratch/u/labs/my.lab_2-deadbeef", True),
    ("/home/u", False), ("/", False), ("~/.fabfile-lab/x-0011aabb", False),
    ("/home/u/.fabfile-lab/x-0011aabb/..", False), ("/home/u/.fabfile-lab/x-0011AABB", False),
    ("/home/u/.fabfile-lab/-0011aabb", False), ("relative/x-0011aabb", False),
])
def test_rm_rf_is_only_ever_given_a_directory_the_tool_made(path, ok):
    assert bool(lab_dir.PATTERN.match(path)) == ok
