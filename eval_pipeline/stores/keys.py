"""API keys: each belongs to an org (and team); the key is shown once at creation and only its sha256
is stored, so the catalog never holds a usable key. Revoked keys stop authenticating at once."""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select

from eval_pipeline import ids
from eval_pipeline.errors import InvalidInput, NotFound
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now

KEY_PREFIX = "ep_"


@dataclass(frozen=True)
class Principal:
    """Who calls: the key's org and team, and the user it acts for (X-On-Behalf-Of)."""

    key_id: str
    org_id: str
    team_id: str
    user: str | None = None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(catalog: Catalog, org_id: str, *, team_id: str | None = None, name: str | None = None,
               kind: str = "bearer", master: bytes | None = None) -> dict[str, Any]:
    """A bearer key, or (kind `aksk`) an access key / secret key pair for Qianfan-style signed calls. A
    secret key is derived from the access key with the service's master secret, so it is stored nowhere
    and the server can still recompute it to check signatures.

    Returns the api_key object (id, object, kind, org_id, team_id, name, created_at) with `key`, or with
    `access_key` and `secret_key`: the only time they are shown. `master` is required for kind `aksk`.
    Raises InvalidInput naming `org`, `team` (1-128 letters, digits, - or _) or `kind`.
    """
    for field, value in (("org", org_id), ("team", team_id)):
        if value is not None and not (1 <= len(value) <= 128 and value.replace("-", "").replace("_", "").isalnum()):
            raise InvalidInput(field, "must be 1-128 letters, digits, - or _")
    if kind not in ("bearer", "aksk"):
        raise InvalidInput("kind", "must be bearer or aksk")
    key = KEY_PREFIX + secrets.token_urlsafe(32) if kind == "bearer" else "ak" + secrets.token_hex(16)
    with catalog.session() as s:
        row = t.ApiKey(id=ids.new_id("api_key"), org_id=org_id, team_id=team_id or f"{org_id}-team", name=name,
                       kind=kind, key_sha256=_digest(key), created_at=now())
        s.add(row)
        s.flush()
        out = {"id": row.id, "object": "api_key", "kind": kind, "org_id": row.org_id, "team_id": row.team_id,
               "name": row.name, "created_at": row.created_at}
    if kind == "bearer":
        return out | {"key": key}
    # the service passes its master secret with every aksk key (service.registry.create_key)
    return out | {"access_key": key, "secret_key": secret_key_for(cast(bytes, master), key)}


def secret_key_for(master: bytes, access_key: str) -> str:
    """The secret key of a Qianfan-style access key: HMAC-SHA256 of "aksk:<access key>" under the master
    secret, 64 hex digits."""
    return hmac.new(master, b"aksk:" + access_key.encode(), hashlib.sha256).hexdigest()


def master_secret(home: Path) -> bytes:
    """The service's master secret: EVAL_PIPELINE_MASTER_SECRET, else a random one kept (mode 0600) in
    the home folder, made on first use."""
    if os.environ.get("EVAL_PIPELINE_MASTER_SECRET"):
        return os.environ["EVAL_PIPELINE_MASTER_SECRET"].encode()
    path = home / "master.secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def revoke_key(catalog: Catalog, key_id: str) -> dict[str, Any]:
    """Revoke a key at once (again: keeps the first time); returns {id, object, revoked, revoked_at (Unix
    seconds)}. Raises NotFound."""
    with catalog.session() as s:
        row = s.get(t.ApiKey, key_id)
        if row is None:
            raise NotFound("api key", key_id)
        row.revoked_at = row.revoked_at or now()
        return {"id": row.id, "object": "api_key", "revoked": True, "revoked_at": row.revoked_at}


def authenticate(catalog: Catalog, key: str | None, user: str | None = None, kind: str = "bearer"
                 ) -> Principal | None:
    """The Principal of an unrevoked key of `kind` (bearer, or aksk for an access key), acting for `user`;
    None for a missing, unknown or revoked key."""
    if not key:
        return None
    with catalog.session() as s:
        row = s.scalar(select(t.ApiKey).where(t.ApiKey.key_sha256 == _digest(key), t.ApiKey.kind == kind,
                                              t.ApiKey.revoked_at.is_(None)))
        return Principal(row.id, row.org_id, row.team_id, user) if row is not None else None
