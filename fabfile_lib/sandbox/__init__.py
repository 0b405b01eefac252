"""A cluster in miniature on one Linux machine: jump, login and compute hosts in network namespaces,
each with its own sshd and hostname, munge and Slurm, and a JupyterLab environment for the compute node.
"""

from .config import HOSTS, SandboxConfig
from .lifecycle import SandboxStatus, down, status, up

__all__ = ["HOSTS", "SandboxConfig", "SandboxStatus", "down", "status", "up"]
