"""``fabfile-lab forward`` as library steps: add a forward to a running lab, list them, stop one.

The request goes into the lab's record and the watcher -- which holds the lab's own forward, and is
asked to if it does not yet -- opens it on the same connection; :func:`add` returns once it is up (or
says why it could not be). Nothing here talks to the cluster: the watcher does.
"""

from __future__ import annotations

import time

from . import added_ports, commands, detached, state
from .added_ports import Added, Target
from .errors import LabError
from .forwards.forward import check_port_free, free_port, port_taken
from .settings import LabSettings
from .state import LabRecord

UP_WITHIN = 30.0  # seconds for the watcher to open an added forward (one ssh -O forward, or the lab held first)
STOPPED_WITHIN = 10.0  # seconds for it to close one (at its next look at the record, within a second)


def listed(record: LabRecord) -> tuple[Added, ...]:
    """The forwards added to the lab, as its record keeps them."""
    return added_ports.from_record(record.added)


def add(settings: LabSettings, record: LabRecord, target: str, local_port: int = 0,
        timeout: float = UP_WITHIN) -> Added:
    """Forward a local port to ``target`` (``added_ports.Target``) for as long as the lab is held; the
    forward once it is up. A target already forwarded is returned as it is."""
    wanted = Target.parse(target)
    if not record.reachable:
        raise LabError(f"lab {record.name!r} has not answered yet: `{commands.run('wait')} --name {record.name}` "
                       "first.")
    known = added_ports.find(listed(record), str(wanted))
    if known is not None and known.state == "up" and detached.forward_alive(record):
        return known
    if local_port:
        check_port_free(local_port)
    entry = known or Added(str(wanted), local_port or free_port())
    _ask(settings, record.name, entry)
    detached.start_detached(settings, state.load(settings.state_path, record.name))  # held, or held already
    return _until_up(settings, record.name, entry, timeout)


def stop(settings: LabSettings, record: LabRecord, which: str) -> Added:
    """Stop the added forward ``which`` (its target as given, or its local port); the forward stopped."""
    entry = added_ports.find(listed(record), which)
    if entry is None:
        shown = ", ".join(a.to for a in listed(record)) or "none"
        raise LabError(f"lab {record.name!r} has no added forward {which!r} (added: {shown}): "
                       f"`{commands.run('forward')} --name {record.name} --list` shows them.")
    _drop(settings, record.name, entry)
    deadline = time.monotonic() + STOPPED_WITHIN
    while detached.forward_alive(record) and port_taken(entry.port) and time.monotonic() < deadline:
        time.sleep(0.05)  # the watcher closes it at its next look at the record
    return entry


def _ask(settings: LabSettings, name: str, entry: Added) -> None:
    def change(r: LabRecord) -> dict:
        others = tuple(a for a in listed(r) if a.to != entry.to)
        return dict(added=added_ports.to_record((*others, entry.said("asked"))))

    if state.amend(settings.state_path, name, change) is None:
        raise LabError(f"lab {name!r} is no longer recorded.")


def _drop(settings: LabSettings, name: str, entry: Added) -> None:
    state.amend(settings.state_path, name, lambda r: dict(
        added=added_ports.to_record(tuple(a for a in listed(r) if a.to != entry.to))))


def _until_up(settings: LabSettings, name: str, entry: Added, timeout: float) -> Added:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = state.load(settings.state_path, name)
        now = added_ports.find(listed(record), entry.to)
        if now is None:
            raise LabError(f"the forward to {entry.to} was stopped meanwhile.")
        if now.state == "up":
            return now
        if now.state == "failed":
            _drop(settings, name, entry)
            raise LabError(f"cannot forward to {entry.to}: {now.note}")
        time.sleep(0.05)
    _drop(settings, name, entry)
    raise LabError(f"the forward to {entry.to} did not come up within {timeout:.0f} s: the lab's forward log "
                   f"({state.log_path(settings.state_path, name)}) says why.")
