"""What a job was given, from scontrol's record of it: counts, sizes and type names only."""

from __future__ import annotations

import pytest

from fabfile_lib.job_resources import Resources, parse

_GPU_JOB = ("JobId=1 JobName=wrap JobState=RUNNING NumNodes=1 NumCPUs=4 TRES=cpu=4,node=1,billing=4 "
            "JOB_GRES=gpu:a100:2   Nodes=n1 CPU_IDs=0-3 Mem=0 GRES=gpu:a100:2(IDX:0-1) MinMemoryNode=0 "
            "TresPerJob=gres:gpu:2")


@pytest.mark.parametrize(("line", "expected"), [
    (_GPU_JOB, Resources(4, "", 2, ("a100",))),
    ("JobId=2 NumCPUs=1 TRES=cpu=1,mem=1G,node=1,billing=1", Resources(1, "1G", 0, ())),
    ("JobId=3 NumCPUs=2 TRES=cpu=2,mem=16000M,node=1,gres/gpu=1", Resources(2, "16000M", 1, ())),
    ("JobId=4 NumCPUs=8 JOB_GRES=gpu:v100:1(IDX:0),gpu:a100:1(IDX:1)", Resources(8, "", 2, ("a100", "v100"))),
    ("JobId=5 NumCPUs=1 TresPerNode=gres/gpu:3", Resources(1, "", 3, ())),
    ("JobId=6 NumCPUs=x TRES=mem=$(id) JOB_GRES=gpu:a;b:1", Resources()),
])
def test_the_job_s_cpus_memory_and_gpus_are_read_from_its_record(line, expected):
    assert parse(line) == expected


def test_it_is_said_in_a_few_words_and_kept_in_the_record_as_a_mapping():
    given = parse(_GPU_JOB)
    assert given.describe() == "4 CPUs, 2 GPUs (a100)"
    assert Resources(1, "1G").describe() == "1 CPU, 1G" and Resources().describe() == ""
    assert Resources.from_dict(given.to_dict()) == given
    assert Resources.from_dict({"cpus": "4", "mem": "1G; rm", "gpu_types": ["ok", "no way"]}) == Resources(
        0, "", 0, ("ok",))
