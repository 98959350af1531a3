"""Why the HTTP server refuses to start: raised while building the app, printed by the command line."""

from __future__ import annotations


class ConfigurationError(Exception):
    """The server must not start as configured; the message says why and what to set."""
