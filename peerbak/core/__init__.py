"""The pure core: formats and rules as functions of bytes and numbers.

No asyncio, no files, no sockets, no clock, no global randomness (an import-linter
contract checks it); time and randomness are parameters. Everything else imports it;
it imports nothing of peerbak's. See docs/architecture.md.
"""
