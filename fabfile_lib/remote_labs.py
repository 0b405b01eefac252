"""The user's labs as the cluster knows them, from any machine: list them, record one here, attach.

Each lab's directory holds ``lab.json`` (see ``lab_dir.py``); joined with squeue, that is enough to rebuild
a local record on a machine that never started the lab -- the token is read over SFTP from its 0600 file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from . import commands, lab, lab_dir, modes, slurm, state, untrusted
from .errors import JobEnded, LabError
from .hops import Hops
from .settings import LabSettings
from .state import LabRecord


@dataclass(frozen=True)
class RemoteLab:
    """A lab found in the remote directory, with its job as squeue sees it (state ENDED if not listed)."""

    meta: lab_dir.LabMeta
    job: slurm.JobInfo

    @property
    def active(self) -> bool:
        return self.job.active


def remote_labs(settings: LabSettings, hops: Hops) -> list[RemoteLab]:
    """The user's labs under ``lab.remote_dir`` on this cluster, joined with squeue (oldest first)."""
    metas = lab_dir.find(hops, settings.remote_dir)
    jobs = slurm.my_jobs(hops.shell(), timeout=settings.connect_timeout + 10) if metas else {}
    found = []
    for meta in metas:
        if not meta.job_id:  # the tool was killed inside sbatch: the job is the one in the lab's directory
            job = slurm.job_in(jobs, meta.remote_dir)
            meta = replace(meta, job_id=job.job_id) if job else meta
        found.append(RemoteLab(meta, jobs.get(meta.job_id, slurm.JobInfo(meta.job_id, "ENDED"))))
    return found


def find_remote(settings: LabSettings, hops: Hops, name: str | None = None, job_id: str | None = None) -> RemoteLab:
    """The lab named ``name`` (its newest live one) or with job ``job_id``, found on the cluster."""
    found = [lab for lab in remote_labs(settings, hops)
             if (job_id and lab.meta.job_id == str(job_id)) or (not job_id and lab.meta.name == name)]
    what = f"job {job_id}" if job_id else f"named {name!r}"
    if not found:
        raise LabError(f"no lab {what} on {settings.login} (under {settings.remote_dir}): "
                       f"`{commands.run('list')} --cluster` lists the labs there.")
    live = [lab for lab in found if lab.active]
    return (live or found)[-1]


def rebuild(settings: LabSettings, hops: Hops, found: RemoteLab) -> LabRecord:
    """A local record for a lab found on the cluster, its token read over SFTP from its 0600 file. The
    cluster is this machine's config; the lab's own choices (name, mode) come from its ``lab.json``."""
    meta = found.meta
    token = (lab_dir.read(hops, meta.remote_dir, lab_dir.TOKEN_FILE) or "").strip()
    if not token:
        raise LabError(f"the token of lab {meta.name!r} cannot be read in {meta.remote_dir} on {settings.login}.")
    if not untrusted.token(token):
        raise LabError(f"lab {meta.name!r} has a token that the tool did not make ({untrusted.quoted(token, 20)} in "
                       f"{meta.remote_dir}/{lab_dir.TOKEN_FILE}): refusing it; `{commands.run('cancel')} --job "
                       f"{meta.job_id}` ends that lab.")
    here = LabSettings.from_config({**asdict(settings), "name": meta.name, "via": meta.via, "app": meta.app,
                                    "reverse_target": meta.reverse_target})  # an app not known here: one line
    return LabRecord(name=meta.name, settings=asdict(here), job_id=meta.job_id, remote_dir=meta.remote_dir,
                     token=token, via=meta.via, local_port=settings.local_port, url_path=meta.url_path, app=meta.app,
                     created=meta.created, login_host=meta.login_host if untrusted.host(meta.login_host) else "")


def attach(settings: LabSettings, hops: Hops, name: str | None = None, job_id: str | None = None, *,
           progress: lab.Progress | None = None, timeout: float | None = None) -> LabRecord:
    """Record a lab found on the cluster on this machine, once Jupyter answers (``lab.tunnel`` then
    forwards to it). A lab already recorded here under that name must be the same job."""
    found = find_remote(settings, hops, name, job_id)
    if not found.active:
        raise JobEnded(f"lab {found.meta.name!r} was found but its job {found.meta.job_id} has ended: "
                       f"`{commands.run('cancel')} --job {found.meta.job_id}` removes its files.")
    mine = state.find(settings.state_path, found.meta.name)
    if mine is not None:
        if mine.job_id != found.meta.job_id:
            raise LabError(f"a different lab named {found.meta.name!r} (job {mine.job_id}) is recorded here: "
                           f"`{commands.run('cancel')} --name {found.meta.name}` or `{commands.run('status')}` first.")
        if mine.reachable:
            return mine
    record = rebuild(settings, hops, found)
    if not state.create(settings.state_path, record):
        raise LabError(f"lab {record.name!r} was recorded here meanwhile (another attach or start): "
                       f"`{commands.run('status')} --name {record.name}`.")
    here = state.settings_of(record)
    try:
        if not modes.mode(record.via).pin(record.login_host):
            return lab.wait(here, record, hops, progress, timeout)
        with Hops.for_lab(here, record.via, record.login_host) as pinned:  # its far end is on that node
            return lab.wait(here, record, pinned, progress, timeout)
    except BaseException:
        state.remove(settings.state_path, record.name)  # attaching failed: this machine keeps nothing
        raise

