"""Services: what a node does (backup, restore, check, repair, prune, undelete, recovery,
maintenance, status, the holder service), written against ports, never adapters.

A service is handed a Repository (its ledger, members, workspace, clock and randomness),
so it runs the same against real SSH links and against the in-process pool of
peerbak.tools.mempool that tests/services uses. See docs/architecture.md.
"""
