"""The project's errors: one base, one class per kind of failure a caller may want to tell apart.

Every failure a user can act on is raised as a :class:`LabError` (or a subclass) with a one-line message
that says what went wrong and what to do about it. Task wrappers turn it into a non-zero exit with no
traceback; library users catch the base, or the subclass they care about, instead of matching text.
"""


class LabError(Exception):
    """A failure with a user-facing, one-line, actionable message."""


class ConfigError(LabError):
    """A setting is missing, of the wrong type, or names something that does not exist."""


class ConnectError(LabError):
    """A hop could not be reached, or its connection ended."""


class HostKeyError(ConnectError):
    """A hop's host key is unknown or does not match the known hosts: never connected to."""


class AuthenticationError(ConnectError):
    """A hop refused our credentials."""


class PromptNeeded(ConnectError):
    """Logging in needs an answer (passphrase, second factor) and nobody can be asked here."""


class ModeUnreachable(ConnectError):
    """Jupyter runs, but this way of reaching it (``lab.via``) is closed on this site."""


class ForwardingRefused(ModeUnreachable):
    """The login node's sshd refused a forward (``AllowTcpForwarding``/``AllowStreamLocalForwarding no``):
    ``refused`` says which kinds ("tcp", "streamlocal"), so that no mode needing them is tried or advised."""

    def __init__(self, message: str, refused: frozenset[str] = frozenset(), said: str = ""):
        super().__init__(message)
        self.refused, self.said = frozenset(refused), said  # said: ssh's own words


class SchedulerError(LabError):
    """Slurm refused a request, or could not be asked (which never means the job ended)."""


class JobEnded(LabError):
    """The job ended (failed, was cancelled, ran out of time) before Jupyter answered."""


class WaitTimeout(LabError):
    """Jupyter did not answer within the time allowed; the job may still be pending or starting."""


def named(kind: str) -> type[LabError]:
    """The class of this hierarchy called ``kind`` (a failure said across processes), else LabError."""
    todo, seen = [LabError], {}
    while todo:
        cls = todo.pop()
        seen[cls.__name__] = cls
        todo += cls.__subclasses__()
    return seen.get(kind, LabError)
