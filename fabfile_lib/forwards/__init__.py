"""The forwards from the laptop to a lab, one module per kind, and holding them.

- ``forward.py``: what a running forward is (:class:`Forward`) and its local end (loopback listeners).
- ``openssh_forward.py``: ``ssh -L`` added to the cluster's master or to a link to the compute node.
- ``openssh_stream.py``: a byte stream over ``ssh -W`` (or a ``-L`` to a Unix socket), for probes.
- ``paramiko_forward.py``: the Paramiko forwarder and its heartbeat, where OpenSSH cannot carry the hops.
- ``lab_forward.py``: the forward a lab's mode needs, over whichever carrier the hops ride.
- ``holding.py``: holding it on its own evidence until the job ends; ``vigil.py`` what it keeps meanwhile;
  ``reconnect.py`` when it tries again; ``job_watch.py`` the job's time left and the walltime warnings.
"""

from .forward import Forward

__all__ = ["Forward"]
