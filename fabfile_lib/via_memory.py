"""``lab.via: auto``: which way of reaching Jupyter works on a cluster -- tried in order the first time,
then remembered per cluster in the state directory.

Whether a site lets the login node ssh to compute nodes, forward to them, or lets a job ssh back to a
login node is a fact of the site, not of one lab: once a mode has answered on a cluster, later labs there
use it first and the others only if it stops working.
"""

from __future__ import annotations

import json
import logging

from . import master_address, modes, state
from .settings import LabSettings

_log = logging.getLogger(__name__)
FILE = "clusters.json"


def candidates(settings: LabSettings) -> list[str]:
    """The modes to try, in order: ``lab.via`` itself, or for ``auto`` the one that worked here before
    and then the others."""
    if settings.via != modes.AUTO:
        return [settings.via]
    known = remembered(settings)
    return [known, *(n for n in modes.NAMES if n != known)] if known else list(modes.NAMES)


def remembered(settings: LabSettings) -> str:
    """The mode that last worked on this cluster ("" if none is known)."""
    try:
        data = json.loads((settings.state_path / FILE).read_text())
        via = data[master_address.cluster_key(settings)]["via"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return via if via in modes.NAMES else ""


def remember(settings: LabSettings, via: str) -> None:
    """Remember that ``via`` worked on this cluster (only when the lab asked for ``auto``)."""
    if settings.via != modes.AUTO or via not in modes.NAMES or remembered(settings) == via:
        return
    path = settings.state_path / FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    data[master_address.cluster_key(settings)] = {"via": via, "login": settings.login}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.write_private(path, json.dumps(data, indent=2))
    _log.info("lab.via auto: %s works on %s", via, settings.login)
