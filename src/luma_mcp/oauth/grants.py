"""OAuth's records in the ledger's database (SQLite, or PostgreSQL shared by replicas).

A grant is one sign-in: which client, for which tenant and subject, the person's API token
sealed (bring-your-own-token mode; `sealing`), and until when. Codes, access and refresh
tokens hang off their grant. What this module guarantees:
- A code or token is stored only as its SHA-256: the database cannot hand one out.
- Codes and refresh tokens are spent once (one conditional update decides, across replicas);
  a spent one presented again revokes its whole grant (RFC 6749 §4.1.2, and refresh-token
  reuse detection, RFC 9700 §4.14.2), since someone else has it (`Credential.stolen`). The one
  exception: a refresh token back within `REUSE_GRACE_SECONDS` of its spending is the loser of
  a concurrent refresh (two replicas, a retried request), refused without ending the winner's
  sign-in. A grant keeps one spent refresh token (the last), enough to catch reuse.
- Every write is one transaction, so a process killed mid-write leaves the grant as it was
  before or after, never between. Writes that touch a grant and its tokens lock the grant's
  row first (exchanging, revoking), so replicas doing both at once take turns and never leave
  a token whose grant is gone.
- Revoking or expiring a grant deletes it, its tokens and its sealed API token together.
- What strangers can make it hold is bounded: registered clients (`max_clients`; unused
  ones expire after a day, and when full the oldest unused one makes room), grants per
  subject (`MAX_GRANTS_PER_SUBJECT`, the oldest go),
  one live access token per grant; expired rows are pruned on every sign-in and registration,
  and every ten minutes (`routes.OAuthEdge`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from mcp.shared.auth import OAuthClientInformationFull

from luma_mcp.core.ledger.scoped import Sql
from luma_mcp.core.ledger.store import Store

Kind = Literal["code", "access", "refresh"]
PREFIXES: dict[Kind, str] = {"code": "luma_ac_", "access": "luma_at_", "refresh": "luma_rt_"}
CODE_SECONDS = 300  # a code is exchanged within seconds of the redirect
CLIENT_UNUSED_SECONDS = 86_400  # a registration nobody signs in with is kept for a day
CLIENT_KEPT_SECONDS = 30 * 86_400  # after its last grant expires, a client stays registered this long
MAX_GRANTS_PER_SUBJECT = 20
# A refresh token presented again this soon after it was spent lost a race with a concurrent
# refresh of the same client (requests to two replicas, a retry after a timeout), which takes
# milliseconds, seconds on a loaded host; a thief rarely replays within it, and gets nothing.
REUSE_GRACE_SECONDS = 10.0


def new_token(kind: Kind) -> str:
    """A fresh code or token: 256 random bits, with a prefix that says what it is (and that
    secret scanners recognise)."""
    return PREFIXES[kind] + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_access_token(bearer: str) -> bool:
    """Whether a bearer is (shaped like) an access token this server issues, not a static one."""
    return bearer.startswith(PREFIXES["access"])


@dataclass(frozen=True)
class Grant:
    grant_id: str
    client_id: str
    tenant: str
    subject: str
    sealed_token: str | None  # the person's API token, sealed (bring-your-own-token mode)
    scopes: list[str]
    resource: str
    expires_at: float


@dataclass(frozen=True)
class Credential:
    """A code or token found by its hash, with its grant."""

    grant: Grant
    kind: Kind
    expires_at: float
    spent_at: float | None  # when it was exchanged; None: not yet
    details: dict[str, Any]  # a code's: redirect_uri, its explicitness, the PKCE challenge

    @property
    def spent(self) -> bool:
        return self.spent_at is not None

    @property
    def stolen(self) -> bool:
        """Spent, and presented again by someone else: any code; a refresh token unless it comes
        back within `REUSE_GRACE_SECONDS` (a concurrent refresh that lost the race)."""
        if self.spent_at is None:
            return False
        return self.kind != "refresh" or time.time() - self.spent_at > REUSE_GRACE_SECONDS


@dataclass(frozen=True)
class Issued:
    access_token: str
    refresh_token: str
    access_expires_at: float


class GrantStore:
    def __init__(self, store: Store, *, access_seconds: float, grant_seconds: float, max_clients: int) -> None:
        self._store = store
        self._sql = store.grant_sql
        self.access_seconds, self.grant_seconds, self.max_clients = access_seconds, grant_seconds, max_clients

    # --- clients ---------------------------------------------------------------------------

    async def add_client(self, client: OAuthClientInformationFull, sealed_secret: str | None) -> bool:
        """Register `client`, its secret only sealed; False when `max_clients` are registered and
        every one has been signed in with."""
        info = client.model_dump_json(exclude={"client_secret"}, exclude_none=True)

        def work(db: Sql) -> bool:
            now = time.time()
            self._prune(db, now)
            full = db.execute(self._sql.live_clients, {"now": now}).fetchone()["clients"] >= self.max_clients
            if full and db.execute(self._sql.evict_unused_client, {}).rowcount != 1:
                return False
            params = {"client_id": client.client_id, "info": info, "sealed_secret": sealed_secret, "now": now}
            db.execute(self._sql.add_client, {**params, "expires_at": now + CLIENT_UNUSED_SECONDS})
            return True

        return await self._store.transact(work, write=True)

    async def client(self, client_id: str) -> tuple[OAuthClientInformationFull, str | None] | None:
        """A registered client and its sealed secret (None: a public client)."""

        def work(db: Sql) -> Any:
            return db.execute(self._sql.client, {"client_id": client_id, "now": time.time()}).fetchone()

        row = await self._store.transact(work)
        if row is None:
            return None
        return OAuthClientInformationFull.model_validate_json(row["info"]), row["sealed_secret"]

    # --- grants ----------------------------------------------------------------------------

    async def start_grant(
        self,
        *,
        client_id: str,
        tenant: str,
        subject: str,
        sealed_token: str | None,
        scopes: list[str],
        resource: str,
        code_details: dict[str, Any],
    ) -> str:
        """A new grant for a sign-in, and the code that stands for it: the code is returned,
        its hash stored. The grant lasts as long as the code unless the code is exchanged."""
        code = new_token("code")
        grant_id = secrets.token_hex(16)

        def work(db: Sql) -> None:
            now = time.time()
            self._prune(db, now)
            expires_at = now + CODE_SECONDS
            db.execute(
                self._sql.add_grant,
                {
                    "grant_id": grant_id,
                    "client_id": client_id,
                    "tenant": tenant,
                    "subject": subject,
                    "sealed_token": sealed_token,
                    "scopes": " ".join(scopes),
                    "resource": resource,
                    "now": now,
                    "expires_at": expires_at,
                },
            )
            self._issue(db, code, "code", grant_id, expires_at, code_details)
            surplus = db.execute(self._sql.surplus_grants, {"subject": subject, "keep": MAX_GRANTS_PER_SUBJECT})
            for row in surplus.fetchall():
                self._drop(db, row["grant_id"])

        await self._store.transact(work, write=True)
        return code

    async def find(self, token: str, kind: Kind) -> Credential | None:
        """The live code or token `token` (spent or not), with its live grant; None if unknown or expired."""
        if not token.startswith(PREFIXES[kind]):
            return None

        def work(db: Sql) -> Any:
            return db.execute(self._sql.by_hash, {"token_hash": token_hash(token), "kind": kind, "now": time.time()})

        row = await self._store.transact(lambda db: work(db).fetchone())
        if row is None or row["token_expires_at"] <= time.time():
            return None
        grant = Grant(
            grant_id=row["grant_id"],
            client_id=row["client_id"],
            tenant=row["tenant"],
            subject=row["subject"],
            sealed_token=row["sealed_token"],
            scopes=row["scopes"].split(),
            resource=row["resource"],
            expires_at=row["expires_at"],
        )
        details = json.loads(row["details"]) if row["details"] else {}
        return Credential(
            grant=grant, kind=kind, expires_at=row["token_expires_at"], spent_at=row["used_at"], details=details
        )

    async def exchange(self, token: str, *, grant_id: str, client_id: str) -> Issued | None:
        """Spend the code or refresh token `token` of the grant `grant_id` for a new access and
        refresh token (earlier access tokens of the grant end); None if it was spent meanwhile."""
        access, refresh = new_token("access"), new_token("refresh")

        def work(db: Sql) -> Issued | None:
            now = time.time()
            spent = token_hash(token)
            # The grant's row first (a revoke locks it first too), then the one conditional update
            # that decides who spends the token.
            if db.execute(self._sql.lock_grant, {"grant_id": grant_id, "now": now}).rowcount != 1:
                return None
            if db.execute(self._sql.spend, {"token_hash": spent, "grant_id": grant_id, "now": now}).rowcount != 1:
                return None
            db.execute(self._sql.drop_kind, {"grant_id": grant_id, "kind": "access"})
            db.execute(self._sql.drop_spent, {"grant_id": grant_id, "kind": "refresh", "token_hash": spent})
            expires_at = now + self.grant_seconds
            access_expires_at = min(now + self.access_seconds, expires_at)
            self._issue(db, access, "access", grant_id, access_expires_at)
            self._issue(db, refresh, "refresh", grant_id, expires_at)
            db.execute(self._sql.extend_grant, {"grant_id": grant_id, "expires_at": expires_at})
            kept = {"client_id": client_id, "expires_at": expires_at + CLIENT_KEPT_SECONDS}
            db.execute(self._sql.keep_client, kept)
            return Issued(access, refresh, access_expires_at)

        return await self._store.transact(work, write=True)

    async def revoke(self, grant_id: str) -> None:
        """The grant, its codes and tokens and its sealed API token, gone."""
        await self._store.transact(lambda db: self._drop(db, grant_id), write=True)

    async def prune(self) -> None:
        """Delete what has expired: grants (with their sealed API tokens), tokens, unused clients."""
        await self._store.transact(lambda db: self._prune(db, time.time()), write=True)

    # --- in one transaction ----------------------------------------------------------------

    def _issue(
        self, db: Sql, token: str, kind: Kind, grant_id: str, expires_at: float, details: dict[str, Any] | None = None
    ) -> None:
        params = {"token_hash": token_hash(token), "kind": kind, "grant_id": grant_id, "expires_at": expires_at}
        db.execute(self._sql.issue, {**params, "details": json.dumps(details) if details else None})

    def _drop(self, db: Sql, grant_id: str) -> None:
        # The grant's row first: an exchange of it in flight on another replica finishes before
        # (and its new tokens go here too) or finds the grant gone.
        db.execute(self._sql.drop_grant, {"grant_id": grant_id})
        db.execute(self._sql.drop_grant_tokens, {"grant_id": grant_id})

    def _prune(self, db: Sql, now: float) -> None:
        sql = self._sql
        for statement in (sql.prune_grant_tokens, sql.prune_grants, sql.prune_tokens, sql.prune_clients):
            db.execute(statement, {"now": now})
