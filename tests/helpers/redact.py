"""A database password used as a canary: no form of it may be seen anywhere."""

from __future__ import annotations

SECRET = "pw-canary-4e1d"


def assert_hidden(text: str) -> None:
    assert SECRET not in text and SECRET[:6] not in text and SECRET[-8:] not in text, text
