"""Entry point for ``inv``: the namespace is built in fabfile_lib; import it to chain tasks of your own."""

from fabfile_lib.tasks import namespace

ns = namespace
