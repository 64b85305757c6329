"""Webhook events of schedules: signing, verifying, and delivering with bounded retries.

Each POST carries the JSON event and `X-Eval-Pipeline-Signature: t=<unix seconds>,v1=<hex>`, where v1 is
HMAC-SHA256 under the schedule's webhook secret of `<t>.<body bytes>`: a receiver recomputes it over the
raw body and refuses a mismatch, and refuses a `t` older than a few minutes, so a captured request cannot
be replayed later (`X-Eval-Pipeline-Delivery`, the event id, lets it drop a duplicate within that window).

Delivery is at least once: a 2xx ends it; a 408, 429, 5xx, timeout or connection error is tried again
after 1, 2, 4, 8... backoff units (EVAL_PIPELINE_WEBHOOK_BACKOFF_SECONDS, default 30) up to MAX_ATTEMPTS
in all; any other answer fails it at once. Every attempt is recorded."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from eval_pipeline.errors import NotFound
from eval_pipeline.stores.catalog import Catalog
from eval_pipeline.stores.catalog import tables as t
from eval_pipeline.stores.catalog.store import now
from eval_pipeline.stores.secrets import SecretUnreadable, decrypt_secret

SIGNATURE_HEADER = "X-Eval-Pipeline-Signature"
EVENT_HEADER = "X-Eval-Pipeline-Event"
DELIVERY_HEADER = "X-Eval-Pipeline-Delivery"
MAX_ATTEMPTS = 6
TIMEOUT = 10.0  # seconds per attempt
LEASE = 120  # seconds an evaluator holds a delivery it is sending
RETRIED = {408, 429}
MAX_ANSWER = 64 * 1024  # bytes of a receiver's answer read at most


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp` (Unix seconds): `t=<ts>,v1=<hex>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300, at: float | None = None) -> bool:
    """Whether `header` signs `body` under `secret` and was made at most `tolerance` seconds from `at`
    (default now), compared in constant time."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if not (fields.get("t", "").isascii() and fields.get("t", "").isdigit()):
        return False
    timestamp = int(fields["t"])
    if abs((time.time() if at is None else at) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).encode()
    return hmac.compare_digest(expected, f"t={timestamp},v1={fields.get('v1', '')}".encode())


def backoff_unit() -> float:
    """Seconds of the first retry's wait (EVAL_PIPELINE_WEBHOOK_BACKOFF_SECONDS, default 30)."""
    return float(os.environ.get("EVAL_PIPELINE_WEBHOOK_BACKOFF_SECONDS") or 30)


def _take(catalog: Catalog, at: float, limit: int) -> list[str]:
    """Lease up to `limit` due deliveries (a conditional update each, so two evaluators never send one
    delivery at the same time)."""
    with catalog.session() as s:
        due = s.execute(select(t.WebhookDelivery.id, t.WebhookDelivery.next_attempt_at)
                        .where(t.WebhookDelivery.status == "pending", t.WebhookDelivery.next_attempt_at <= at)
                        .order_by(t.WebhookDelivery.next_attempt_at).limit(limit)).all()
    taken = []
    for delivery_id, when in due:
        with catalog.session() as s:
            got = s.execute(update(t.WebhookDelivery).where(t.WebhookDelivery.id == delivery_id,
                                                            t.WebhookDelivery.next_attempt_at == when)
                            .values(next_attempt_at=int(at) + LEASE))
            if got.rowcount == 1:  # type: ignore[attr-defined]
                taken.append(delivery_id)
    return taken


def _send(client: httpx.Client, url: str, secret: str, delivery_id: str, event_type: str,
          payload: dict[str, Any]) -> tuple[int | None, str | None]:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, int(time.time()), body),
               EVENT_HEADER: event_type, DELIVERY_HEADER: delivery_id, "User-Agent": "eval-pipeline-webhooks"}
    deadline = time.monotonic() + TIMEOUT
    try:
        with client.stream("POST", url, content=body, headers=headers, timeout=TIMEOUT) as response:
            read = 0
            for piece in response.iter_raw():  # the answer is not needed: read a little, never for long
                read += len(piece)
                if read > MAX_ANSWER or time.monotonic() > deadline:
                    break
            return response.status_code, None
    except Exception as e:  # noqa: BLE001  (httpx's errors, and its InvalidURL / IDNA errors of odd URLs)
        return None, f"{type(e).__name__}: {e}"


def deliver_due(catalog: Catalog, home: Path, *, at: float | None = None, limit: int = 20,
                budget: float = 40.0) -> list[dict[str, Any]]:
    """Send the webhook events that are due (at most `limit`, stopping after `budget` seconds), each once,
    recording the attempt and the next try or the end. Returns per attempt {delivery_id, attempt,
    status_code, error, status}."""
    start = time.monotonic()
    at = time.time() if at is None else at
    done: list[dict[str, Any]] = []
    taken = _take(catalog, at, limit)
    if not taken:
        return done
    with httpx.Client(follow_redirects=False) as client:
        for delivery_id in taken:
            if time.monotonic() - start > budget:
                with catalog.session() as s:  # give the lease back: the next evaluation sends it
                    s.execute(update(t.WebhookDelivery).where(t.WebhookDelivery.id == delivery_id)
                              .values(next_attempt_at=int(at)))
                continue
            with catalog.session() as s:
                d = s.get(t.WebhookDelivery, delivery_id)
                sched = s.get(t.Schedule, d.schedule_id) if d is not None else None
                if d is None or sched is None:
                    continue
                url, token = sched.webhook_url, sched.webhook_secret_encrypted
                event_type, payload, attempt = d.event_type, d.payload, len(d.attempts or []) + 1
            began = time.monotonic()
            code: int | None = None
            error: str | None
            permanent = True  # no retry can fix these: no webhook, or a secret this server key cannot read
            if url is None or token is None:
                error = "the schedule has no webhook any more"
            else:
                try:
                    secret = decrypt_secret(home, token)
                except SecretUnreadable as e:
                    error = str(e)
                else:
                    permanent = False
                    code, error = _send(client, url, secret, delivery_id, event_type, payload)
            ok = code is not None and 200 <= code < 300
            retry = not ok and not permanent and (code is None or code >= 500 or code in RETRIED)
            status = "delivered" if ok else ("pending" if retry and attempt < MAX_ATTEMPTS else "failed")
            record = {"attempt": attempt, "at": now(), "status_code": code, "error": error,
                      "duration_ms": round((time.monotonic() - began) * 1000)}
            with catalog.session() as s:
                d = s.get(t.WebhookDelivery, delivery_id)
                if d is None:
                    continue
                d.attempts = [*(d.attempts or []), record]
                d.status = status
                d.next_attempt_at = int(time.time() + backoff_unit() * 2 ** (attempt - 1)) if status == "pending" \
                    else None
                d.delivered_at = now() if ok else None
            done.append({"delivery_id": delivery_id, **record, "status": status})
    return done


def deliveries(catalog: Catalog, schedule_id: str, *, org_id: str | None = None, limit: int = 50
               ) -> list[dict[str, Any]]:
    """The schedule's webhook deliveries, newest first: {id, run_id, event_type, status, attempts,
    next_attempt_at, created_at, delivered_at}. Raises NotFound."""
    with catalog.session() as s:
        sched = s.get(t.Schedule, schedule_id)
        if sched is None or (org_id is not None and sched.org_id != org_id):
            raise NotFound("schedule", schedule_id)
        rows = s.scalars(select(t.WebhookDelivery).where(t.WebhookDelivery.schedule_id == schedule_id)
                         .order_by(t.WebhookDelivery.created_at.desc(), t.WebhookDelivery.id).limit(limit))
        return [{"id": d.id, "run_id": d.run_id, "event_type": d.event_type, "status": d.status,
                 "attempts": d.attempts or [], "next_attempt_at": d.next_attempt_at, "created_at": d.created_at,
                 "delivered_at": d.delivered_at} for d in rows]
