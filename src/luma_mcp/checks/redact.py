"""Database connection strings as they may be shown in a message or log line.

Guarantees: `redact_conninfo` returns `postgresql://host:port/dbname` built only from the
host, host address, port and database name, and only from values made of plain name
characters; nothing else of the string (user, password in the netloc, `password=`,
`sslpassword=`, `passfile=` or any other parameter, in URL or libpq `key=value` form)
can appear in it. It parses with psycopg's own parser when psycopg is installed (the
optional `postgres` extra, imported only here and only when called) and otherwise with
a conservative reader of the same two forms. It never raises and never quotes a parser's
error message, which can contain part of the string.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

SHOWN_PARAMETERS = ("host", "hostaddr", "port", "dbname")
# Host names, addresses, ports and database names: nothing that could be a stray secret or URL.
# (Patterns, not compiled at import: the stdio server's start must not pay for them.)
_PLAIN = r"[A-Za-z0-9_.,:\[\]$-]{1,253}"
_PORTS = r"[0-9]{1,5}(,[0-9]{1,5})*"  # a port is digits: anything else is a misread password
_KEY_VALUE = r"""(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)"""
HIDDEN = "?"


def redact_conninfo(conninfo: str) -> str:
    """`conninfo` with every credential and parameter gone: postgresql://host:port/dbname."""
    parameters = _parsed(conninfo)
    if parameters is None:
        parameters = _parsed_conservatively(conninfo)
    shown = {name: value for name, value in parameters.items() if name in SHOWN_PARAMETERS and value}
    plain = {name: value if re.fullmatch(_PLAIN, value) else HIDDEN for name, value in shown.items()}
    if "port" in plain and not re.fullmatch(_PORTS, plain["port"]):
        plain["port"] = HIDDEN
    host = plain.get("host") or plain.get("hostaddr") or ""
    port = f":{plain['port']}" if "port" in plain else ""
    return f"postgresql://{host}{port}/{plain.get('dbname', '')}"


def conninfo_problem(conninfo: str) -> str | None:
    """Why psycopg cannot parse `conninfo`, quoting none of it; None if it parses or psycopg is missing."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None
    advice = (
        "check the URL's form, that the port is a number, and that special characters in the user or "
        "password are percent-encoded (% as %25, @ as %40, / as %2F)"
    )
    try:
        port = str(conninfo_to_dict(conninfo).get("port") or "")
    except Exception:  # psycopg.ProgrammingError, whose text may quote the password
        return f"psycopg cannot parse it: {advice}"
    if port and not re.fullmatch(_PORTS, port):
        # e.g. a password holding "/" read as host and port: part of the password would be shown
        return f"its port is not a number, so it was misread: {advice}"
    return None


def _parsed(conninfo: str) -> dict[str, str] | None:
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return None
    try:
        return {name: str(value) for name, value in conninfo_to_dict(conninfo).items()}
    except Exception:  # see conninfo_problem: its message is never shown
        return None


def _parsed_conservatively(conninfo: str) -> dict[str, str]:
    text = conninfo.strip()
    if "://" not in text:
        found = {name: value.strip("'") for name, value in re.findall(_KEY_VALUE, text)}
        return {name: value for name, value in found.items() if name in SHOWN_PARAMETERS}
    try:
        parts = urlsplit(text)
        netloc = parts.netloc.rpartition("@")[2]  # user and password are never read
        host, _, port = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
        if not host:  # no port given
            host, port = netloc, ""
    except ValueError:
        return {}
    return {"host": host, "port": port if port.isdigit() else "", "dbname": parts.path.lstrip("/")}
