"""What a bearer token may hold: the one rule, for the API token, access keys and HTTP bearers.

Printable ASCII without spaces (no control or non-ASCII characters), 1 to 512 characters.
API tokens and access keys are like that; anything else could not even be sent on as a
header. Tiny and import-free: the stdio path (`client`, `config`) and the HTTP edge
(`admission`, `http_app`) all use it.
"""

MAX_BEARER_LENGTH = 512


def acceptable_bearer(token: str) -> bool:
    """Whether `token` may be sent or accepted as `Authorization: Bearer <token>`."""
    return 0 < len(token) <= MAX_BEARER_LENGTH and all("!" <= c <= "~" for c in token)
