"""Free text a caller hands on (a prompt): no control or bidi characters.

`check_plain_text` refuses, with one sentence naming the argument, the character's code
point and its position, any C0 or C1 control character but tab and line breaks (NUL, ESC,
DEL, ...), the Unicode bidi controls (U+061C, U+200E, U+200F, U+202A-U+202E,
U+2066-U+2069) and lone surrogates. Used by every tool and MCP prompt that takes such text.

Refused rather than stripped: a prompt is paid for, and the ledger's duplicate check
compares it, so what is sent must be exactly what the caller wrote; a bidi control can make
a person read (and approve) a prompt other than the one sent, and stripping it silently
would still send a text nobody saw as such; NUL and ESC mean nothing to a video model and
only reach logs and terminals. A model removes the character and calls again at once.
Other invisible characters (zero-width joiners in emoji, soft hyphens) stay: they reorder
nothing. Checked in code, not by a schema pattern, which every tools/list would carry.
"""

from __future__ import annotations

import re
import unicodedata

# Characters that can hide or reorder the text around them: C0 and C1 controls and DEL, the
# Unicode bidi controls, and lone surrogates. The one definition, for prompts here and for
# what the sign-in page shows of a stranger's client (oauth.client_rules, oauth.pages).
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# Line breaks and tabs are prose, not hiding (CR included: text pasted on Windows has CRLF).
_PROSE_CONTROLS = frozenset("\t\n\r")
# Unicode gives controls no names; these are the ones a person may recognise.
_CONTROL_NAMES = {0x00: "NULL", 0x08: "BACKSPACE", 0x1B: "ESCAPE", 0x7F: "DELETE"}


def is_hidden_control(char: str) -> bool:
    """Whether `char` can hide or reorder the text around it (tab and line breaks included)."""
    return _HIDDEN.fullmatch(char) is not None


def without_hidden_controls(text: str) -> str:
    return _HIDDEN.sub("", text)


class UnsafeText(ValueError):
    """Text that is not passed on; the message says which character, where, and what to do."""


def check_plain_text(**texts: str | None) -> None:
    """Raise `UnsafeText` for the first argument (by name; None: not given) holding a refused character."""
    for name, text in texts.items():
        found = next((m for m in _HIDDEN.finditer(text) if m.group() not in _PROSE_CONTROLS), None) if text else None
        if found is None:
            continue
        code = ord(found.group())
        label = _CONTROL_NAMES.get(code) or unicodedata.name(found.group(), "")
        shown = f"U+{code:04X} {label}" if label else f"U+{code:04X}"
        raise UnsafeText(
            f"{name} contains a control character ({shown}) at position {found.start()}: remove it and try again."
        )
