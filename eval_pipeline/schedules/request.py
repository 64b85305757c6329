"""A schedule's fields as MKA1's `createEvalSchedule` / `updateEvalSchedule` take them, every rule checked;
errors name the field (`run.models[1]`, `interval_seconds`)."""
from __future__ import annotations

import ipaddress
import socket
import zoneinfo
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from eval_pipeline.errors import InvalidInput
from eval_pipeline.runs.request import RunRequest
from eval_pipeline.validation import Strict, parse_model

MIN_INTERVAL = 60  # seconds: the tick sensor's own cadence is 10 s
MAX_INTERVAL = 366 * 86_400
OverlapPolicy = Literal["skip", "buffer_one", "allow_all"]
DEFAULT_ALPHA = 0.05  # false discovery rate of the regression alerts (Benjamini-Hochberg)
DEFAULT_MIN_DROP = 0.01  # in the metric's own units (0.01 = one point of accuracy)


class RegressionSettings(Strict):
    """When a drop is a regression: its Benjamini-Hochberg adjusted p-value is under `alpha` and its size
    (in the metric's units) at least `min_drop`."""

    alpha: float = Field(DEFAULT_ALPHA, gt=0, lt=1)
    min_drop: float = Field(DEFAULT_MIN_DROP, ge=0, le=1e9, allow_inf_nan=False)


def check_timezone(name: str) -> str:
    """`name` if it is an IANA time zone; ValueError otherwise."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder of zones ("America")
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin)") from None
    return name


def check_cron_fields(cron: str) -> str:
    """`cron` if it has the 5 fields of a standard cron (Dagster checks the rest); ValueError otherwise."""
    if len(cron.split()) != 5:
        raise ValueError("must have 5 fields: minute hour day-of-month month day-of-week")
    return cron


def check_webhook_url(url: str) -> str:
    """`url` if it is an absolute http(s) URL with a host; ValueError otherwise."""
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError("must be ASCII without spaces or control characters (punycode for international names)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    parts.port  # noqa: B018  (raises ValueError for a port out of range)
    return url


class ScheduleFields(Strict):
    """Every field of a schedule as stored (create's body with defaults filled in)."""

    name: str = Field(min_length=1, max_length=255)
    suite_id: str = Field(min_length=1, max_length=64)
    run: dict[str, Any]
    description: str | None = Field(None, max_length=10_000)
    suite_version: int | None = Field(None, ge=1, le=2**31 - 1)
    cron: str | None = Field(None, max_length=255)
    interval_seconds: int | None = Field(None, ge=MIN_INTERVAL, le=MAX_INTERVAL)
    timezone: str = Field("UTC", max_length=64)
    overlap_policy: OverlapPolicy = "skip"
    enabled: bool = True
    webhook_url: str | None = Field(None, max_length=2048)
    webhook_secret: str | None = Field(None, min_length=16, max_length=512)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=64)
    regression: RegressionSettings = Field(default_factory=RegressionSettings)  # type: ignore[arg-type]

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        return check_timezone(v)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return v if v is None else check_webhook_url(v)

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, v: str | None) -> str | None:
        return v if v is None else check_cron_fields(v)

    @model_validator(mode="after")
    def _one_cadence(self) -> Self:
        if (self.cron is None) == (self.interval_seconds is None):
            raise InvalidInput("cron", "give exactly one of cron and interval_seconds")
        return self

    def run_request(self) -> RunRequest:
        """The run template as the run request each tick makes (suite and version from the schedule).
        Raises InvalidInput naming `run.<field>`."""
        if "suite_id" in self.run or "suite_version" in self.run:
            raise InvalidInput("run.suite_id", "the schedule's suite_id and suite_version say which suite")
        try:
            return RunRequest.parse({**self.run, "suite_id": self.suite_id, "suite_version": self.suite_version})
        except InvalidInput as e:
            raise InvalidInput(f"run.{e.field}", e.message) from None


def parse_schedule(body: object) -> ScheduleFields:
    """A create request's body as ScheduleFields. Raises InvalidInput naming the field."""
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    for field in ("timezone", "overlap_policy", "enabled", "metadata", "regression"):
        if field in body and body[field] is None:  # the SDK sends None for "the default"
            body = {k: v for k, v in body.items() if k != field}
    fields = parse_model(ScheduleFields, body)
    if (fields.webhook_url is None) != (fields.webhook_secret is None):
        raise InvalidInput("webhook_secret", "webhook_url and webhook_secret go together: events are signed")
    fields.run_request()
    return fields


# PATCH: absent means unchanged; null clears these (MKA1's Unset fields), and is "unchanged" for the others
CLEARABLE = ("description", "suite_version", "cron", "interval_seconds", "webhook_url", "webhook_secret")
UPDATABLE = (*CLEARABLE, "name", "timezone", "overlap_policy", "enabled", "run", "metadata", "regression")


def apply_update(current: dict[str, Any], changes: object) -> ScheduleFields:
    """The schedule's fields after a PATCH body `changes` over `current` (ScheduleFields' dump, with the
    webhook secret None when unchanged). Giving one of cron / interval_seconds clears the other. Raises
    InvalidInput naming the field."""
    if not isinstance(changes, dict):
        raise InvalidInput("body", "must be a JSON object")
    for key in changes:
        if key not in UPDATABLE:
            raise InvalidInput(key, "is not a field a schedule update may change" if key in ScheduleFields.model_fields
                               else "Extra inputs are not permitted")
    merged = dict(current)
    for key, value in changes.items():
        if value is not None or key in CLEARABLE:
            merged[key] = value
    if changes.get("cron") is not None and "interval_seconds" not in changes:
        merged["interval_seconds"] = None
    if changes.get("interval_seconds") is not None and "cron" not in changes:
        merged["cron"] = None
    fields = parse_model(ScheduleFields, merged)
    fields.run_request()
    return fields


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a URL host spells, in any form the resolver accepts (127.1, 2130706433, 0x7f000001,
    ::ffff:127.0.0.1); None for a name."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def refers_to(url: str, hosts: set[str], port: int | None) -> bool:
    """Whether `url` points at this server: one of `hosts` (names or addresses it answers on), a loopback or
    unspecified address in any spelling, or localhost, on `port`."""
    parts = urlsplit(url)
    target_port = parts.port or (443 if parts.scheme == "https" else 80)
    host = (parts.hostname or "").lower().rstrip(".")
    addr = _address(host)
    local = host == "localhost" or host.endswith(".localhost") or (
        addr is not None and (addr.is_loopback or addr.is_unspecified))
    return target_port == port and (host in hosts or local or (addr is not None and str(addr) in hosts))
