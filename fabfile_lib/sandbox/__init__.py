"""A cluster in miniature on one Linux machine: jump, login and compute hosts in network namespaces,
each with its own sshd and hostname, munge and Slurm, and a JupyterLab environment for the compute node.

Its lifecycle (``up``, ``down``, ``status``) is imported when first used: the lab commands share a
namespace with ``sandbox.*`` in the repository and should not pay for it at every start-up.
"""

from .config import HOSTS, SandboxConfig

__all__ = ["HOSTS", "SandboxConfig", "SandboxStatus", "down", "status", "up"]
_LIFECYCLE = ("SandboxStatus", "down", "status", "up")


def __getattr__(name: str):
    if name in _LIFECYCLE:
        from . import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
