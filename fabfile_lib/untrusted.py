"""Checks for what the cluster tells us: data, never code.

Anything read back from the cluster -- squeue and scontrol output, files the job writes, ``lab.json`` --
can be changed by whatever runs as the user there (a function in ``~/.bashrc``, a script on the shared
``PATH``, any job). It is checked here where it enters, with ``fullmatch`` (a trailing newline is not a
match), before it reaches an ssh argument, a config file, a URL or ``rm``.
"""

from __future__ import annotations

import ipaddress
import re

_JOB_ID = re.compile(r"[0-9]+(?:_[0-9]+)?")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def job_id(text: object) -> bool:
    """Digits, or ``digits_digits`` for an array task."""
    return isinstance(text, str) and _JOB_ID.fullmatch(text) is not None


_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")


def host(text: object) -> bool:
    """A host name, an IPv4 address, or an IPv6 address of hex digits, ``:`` and ``.`` only.

    No scope id: ``ipaddress`` takes ``fe80::1%<anything without % or />`` -- newlines, quotes, ``$(...)``
    --, which would carry an ssh-config line into an IDE entry or a ProxyCommand into a gateway string."""
    if not isinstance(text, str) or not text or len(text) > 253:
        return False
    if _HOSTNAME.fullmatch(text):
        return True
    if not _IPV6.fullmatch(text):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def quoted(text: object, most: int = 60) -> str:
    """Text the cluster gave, for a message: ``repr`` of at most ``most`` characters, so it stays one line
    and shows control characters as escapes."""
    return repr(str(text)[:most]) + ("..." if len(str(text)) > most else "")


def printable(text: str, most: int = 300) -> str:
    """Cluster text for a one-line message: control characters (escape sequences a terminal would act
    on, a carriage return that would hide what came before) shown as escapes; at most ``most`` characters."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:most])


TOKEN_LENGTHS = (32, 128)  # the tool makes secrets.token_urlsafe(32): 43 characters
_TOKEN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTHS[0]},{TOKEN_LENGTHS[1]}}}")


def token(text: object) -> bool:
    """A lab token in the shape the tool makes: URL-safe base64, 32 to 128 characters. Anything else would
    reach a URL, an HTTP header, the redirect page's script and the terminal."""
    return isinstance(text, str) and _TOKEN.fullmatch(text) is not None


_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def user_at_host(text: object) -> bool:
    """``host`` or ``user@host``, the user a plain POSIX account name."""
    if not isinstance(text, str):
        return False
    user, at, name = text.rpartition("@")
    return host(name) and (not at or _USER.fullmatch(user) is not None)


# The login node's names and its home directory (physical, as SFTP's realpath gives it): always the last three
# lines (a name said twice where `hostname -f` fails). Whatever a login shell's rc file prints comes before
# them, ended by the first echo even where it printed no newline of its own.
FACTS_COMMAND = ["sh", "-c", "echo; hostname; hostname -f 2>/dev/null || hostname; cd && pwd -P"]
HOME_MAX = 1024


def home(text: object) -> bool:
    """An absolute directory path with no control characters and no ``.``/``..`` parts: the base of every
    lab directory (it is always shell-quoted where it is used)."""
    return (isinstance(text, str) and 0 < len(text) <= HOME_MAX and text.startswith("/") and text.isprintable()
            and not any(part in (".", "..") for part in text.split("/")))


def login_facts(text: str) -> tuple[str, tuple[str, ...]]:
    """What ``FACTS_COMMAND`` printed: the home ("" if it is not a valid one) and the host names, from its
    last three lines only."""
    *_, short, full, last = ["", "", "", *text.rstrip("\n").split("\n")]
    return (last if home(last) else ""), host_names(f"{short}\n{full}")


def host_names(text: str, most: int = 2) -> tuple[str, ...]:
    """The distinct host names in ``text`` (what ``hostname; hostname -f`` printed), in order; the rest is
    dropped."""
    return tuple(dict.fromkeys(word for word in text.split() if host(word)))[:most]


def lab_name(text: object) -> bool:
    """A lab name as the tool makes them (letters, digits, ``.``, ``_``, ``-``; not ``.``/``..``)."""
    return isinstance(text, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}", text) is not None


def port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


SOCKET_PATH_MAX = 100  # sun_path holds 104 (BSD, macOS) or 108 (Linux) bytes with its NUL: stay under both
_SOCKET_PATH = re.compile(r"(?:/[A-Za-z0-9_.-]+)+")


def socket_path(text: object) -> bool:
    """An absolute Unix-socket path of plain words (no ``..``, blanks, ``:``, ``%`` or quotes) short
    enough for ``sun_path``: safe in an ``-L`` spec and an ssh argument."""
    return (isinstance(text, str) and len(text) <= SOCKET_PATH_MAX and _SOCKET_PATH.fullmatch(text) is not None
            and not any(part in (".", "..") for part in text.split("/")))
