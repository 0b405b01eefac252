"""A team's own ``tasks.py``: put the project on the cluster, start a lab in it, then report it.

Everything goes through the tool's Python API and the same hops as ``inv lab.*`` (one login, the
second factor asked once)::

    inv -f lab.yaml --search-root examples -c team_tasks work --project ~/src/analysis
    inv -f lab.yaml --search-root examples -c team_tasks lab.cancel --name analysis

Copy it next to your project as ``tasks.py`` and change what your team needs.
"""

from __future__ import annotations

import posixpath
import shlex
import shutil
import subprocess
from pathlib import Path

from invoke import Collection, task

from fabfile_lib import lab, lab_dir, state
from fabfile_lib.hops import Hops, run
from fabfile_lib.settings import LabSettings
from fabfile_lib.start import start
from fabfile_lib.tasks import lab as lab_tasks
from fabfile_lib.tasks import user_errors

REMOTE_PROJECTS = "~/projects"  # where projects go on the cluster
SKIP = {".git", "__pycache__", ".venv", ".ipynb_checkpoints"}


def _settings(c, project: str, **overrides) -> LabSettings:
    name = Path(project).resolve().name
    return LabSettings.from_config(c.config.lab, name=name, **overrides)


def upload(hops: Hops, project: Path) -> str:
    """Copy ``project`` to ``~/projects/NAME`` on the login node: rsync over the kept login where the
    laptop has OpenSSH and rsync, SFTP through the same connection otherwise. Returns the remote path."""
    login = hops.login()
    target = posixpath.join(lab_dir.base(hops, REMOTE_PROJECTS), project.name)
    run(login, ["mkdir", "-p", target])
    dest = hops.master.address.dest if hops.openssh else ""
    if dest and not dest.startswith("ssh://") and shutil.which("rsync"):
        shell = shlex.join(hops.master.address.argv())
        excludes = [f"--exclude={name}" for name in sorted(SKIP)]
        subprocess.run(["rsync", "-a", "--delete", *excludes, "-e", shell, f"{project}/", f"{dest}:{target}/"],
                       check=True, capture_output=True, text=True, timeout=600)
        return target
    for path in sorted(project.rglob("*")):
        if SKIP & set(path.relative_to(project).parts):
            continue
        remote = posixpath.join(target, *path.relative_to(project).parts)
        if path.is_dir():
            run(login, ["mkdir", "-p", remote])
        else:
            login.put(str(path), remote)
    return target


@task(help={"project": "the project directory to put on the cluster (default: here)"})
@user_errors
def sync(c, project="."):
    """Put the project directory on the cluster (before the lab starts in it)."""
    settings = _settings(c, project)
    with Hops(settings) as hops:
        target = upload(hops, Path(project).resolve())
    print(f"synced {project} to {settings.login}:{target}")


@task(help={"project": "the project directory (default: here)"})
@user_errors
def report(c, project="."):
    """Say where the lab runs and for how long (after it started)."""
    state_dir = _settings(c, project).state_path
    record = state.load(state_dir, Path(project).resolve().name)
    settings = lab.settings_for(record)
    with Hops(settings) as hops:
        st = lab.status(record, hops)
    print(f"lab {st.name}: job {st.job_id} on {st.node}, {st.time_left} left: {st.url}")


@task(help={"project": "the project directory (default: here)"})
@user_errors
def work(c, project="."):
    """Sync the project, start a lab whose root is its copy on the cluster, hold its forwards in the
    background, and report it. (The steps are called, not Invoke pre/post tasks: those get no arguments.)"""
    sync(c, project)
    name = Path(project).resolve().name
    settings = _settings(c, project)
    with Hops(settings) as hops:
        root = posixpath.join(lab_dir.base(hops, REMOTE_PROJECTS), name)
        # The tool's own start: what is kept or cancelled on a failure is its policy, not a copy of it.
        start(_settings(c, project, notebook_dir=root), hops, detach=True)  # held by the watcher when it returns
    report(c, project)


ns = Collection(sync, work, report)
ns.add_collection(lab_tasks.ns)
