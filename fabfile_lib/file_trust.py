"""Whether a file on this machine may configure the tool: who owns it, and who could have changed it.

A file configures the tool -- and so runs code as the user: an ssh config's ``Match exec``, a setup line,
a login host that receives the user's second factor -- only when nobody else could have written it: the
file and every directory above it are owned by the user or root, and none of them is writable by group or
others (a root-owned directory with the sticky bit, such as ``/tmp``, lets nobody replace what another user
owns in it). As git refuses a repository owned by someone else (``safe.directory``).

Where the system has no user ids (Windows), nothing can be checked here and files are taken as they are.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

ROOT = 0


def me() -> int | None:
    """This process's user id, or None where there are none (Windows)."""
    getuid = getattr(os, "geteuid", None)
    return getuid() if getuid else None


def _why_not(where: Path, info: os.stat_result, owners: frozenset[int], kind: str) -> str:
    if info.st_uid not in owners:
        return f"{kind} {where} is owned by another user (uid {info.st_uid})"
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    sticky_root = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX and info.st_uid == ROOT
    if writable and not sticky_root:
        return f"{kind} {where} is writable by {'others' if info.st_mode & stat.S_IWOTH else 'its group'}"
    return ""


def untrusted_because(path: Path, owners: set[int] | frozenset[int] | None = None) -> str:
    """Why ``path`` (a file or a directory) could have been written by someone other than ``owners`` (the
    user and root by default); "" if it could not. Links are followed, and the link itself counts too."""
    uid = me()
    if uid is None:
        return ""
    allowed = frozenset(owners if owners is not None else {uid, ROOT})
    absolute = Path(os.path.abspath(path))
    for where in (absolute, *absolute.parents):
        try:
            link = where.lstat()
        except FileNotFoundError:
            continue  # not made yet: its parents decide who can make it
        except OSError as exc:
            return f"{where} cannot be checked ({exc.strerror})"
        kind = "file" if where == absolute and not stat.S_ISDIR(link.st_mode) else "directory"
        if stat.S_ISLNK(link.st_mode):
            if link.st_uid not in allowed:
                return f"link {where} is owned by another user (uid {link.st_uid})"
            why = untrusted_because(where.resolve(), allowed)  # where it leads, from there up
        else:
            why = _why_not(where, link, allowed, kind)
        if why:
            return why
    return ""


def digest(data: bytes) -> str:
    """The content hash an allowed file is recorded with."""
    return hashlib.sha256(data).hexdigest()
