"""The composition root: builds the adapters and hands them to the services.

``compose`` opens a repository for one command; ``daemon`` and ``server`` are the
long-running node; ``recover`` dials a member before a roster exists. See
docs/architecture.md.
"""
