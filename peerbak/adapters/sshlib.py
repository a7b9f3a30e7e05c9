"""asyncssh, imported in one place, with one known third-party deprecation silenced.

asyncssh 2.24.1 names cryptography's DSA classes in its type aliases, and cryptography
51 warns ``DSA is deprecated`` on each such name: ten lines on the stderr of every
command, and an error under pytest's ``filterwarnings = error``. peerbak uses no DSA
(Ed25519 keys only, protocol/wire.md), so exactly that warning, of that category, raised
from asyncssh's own modules, is ignored; any other warning still shows.

Drop this when an asyncssh release after 2.24.1 no longer touches cryptography's DSA
names: ``scripts/test --latest`` then passes without it.
Every module that needs asyncssh imports it from here, so the filter is in place first.
"""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

warnings.filterwarnings(
    "ignore",
    message="DSA is deprecated",
    category=CryptographyDeprecationWarning,
    module=r"asyncssh(\.|$)",
)

import asyncssh  # noqa: E402 (the filter must be in place first)

__all__ = ["asyncssh"]
