"""Adapters: one I/O library each, implementing the ports (see peerbak.ports).

SQL only in ``ledger/``; asyncssh only through ``sshlib``; zeroconf only in
``discovery``. Adapters never import a service. See docs/architecture.md.
"""
