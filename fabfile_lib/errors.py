"""The project's single error type.

Every failure a user can act on is raised as :class:`LabError` with a one-line message that says what
went wrong and what to do about it. Task wrappers turn it into a non-zero exit with no traceback; library
users catch it like any other exception.
"""


class LabError(Exception):
    """A failure with a user-facing, one-line, actionable message."""
