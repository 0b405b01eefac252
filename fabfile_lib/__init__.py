"""JupyterLab on an HPC compute node, reached through a jump host, driven by Fabric and Invoke."""

from .errors import LabError

__all__ = ["LabError"]
