"""The shape of the config file, validated with pydantic so every mistake names its field.

Unknown fields are errors (a typo must not silently fall back to a default). Secrets never
appear here: a partner's token is given as the *name* of an environment variable.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")  # a path template's key type
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


def parse_duration(value: Any) -> timedelta:
    """Read '90s', '15m', '2h', '1d' (or a number of seconds) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected a duration like '90s', '15m', '2h' or '1d', got {value!r}")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def regex(text: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as err:
        raise ValueError(f"{what} '{text}' is not a valid regular expression: {err}") from None


class KeyType(Strict):
    """A kind of business identifier. Identity keys link observations into one transaction."""

    label: str
    identity: bool = True
    pattern: str | None = Field(
        None,
        description="Regex every value of this type matches whole: a path template's placeholder matches it, and an "
        "identity value of another shape is kept as descriptive, linking nothing",
    )

    @model_validator(mode="after")
    def _valid_pattern(self) -> KeyType:
        if self.pattern:
            regex(self.pattern, "pattern")
        return self


class KeyRule(Strict):
    """Where to find a business key. Exactly one of attribute, path_template, json_pointer,
    regex says where; ``system`` (a glob) limits the rule to matching systems."""

    key: str | None = Field(None, description="Key type produced; path templates and named regex groups name their own")
    system: str = "*"
    attribute: str | None = None
    path_template: str | None = None
    json_pointer: str | None = None
    regex: str | None = None
    field: str | None = Field(None, description="For regex rules: the attribute the regex reads (default: all text)")
    event_type: str | None = Field(
        None, description="For json_pointer rules: only events whose type matches this glob (orders/*)"
    )

    @model_validator(mode="after")
    def _one_locator(self) -> KeyRule:
        given = [n for n in ("attribute", "path_template", "json_pointer", "regex") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("expected exactly one of attribute, path_template, json_pointer, regex")
        if self.regex and not regex(self.regex, "regex").groupindex:
            raise ValueError(
                f"regex '{self.regex}' names no key type: a named group says which, as (?P<erp_order>SO-\\d+)"
            )
        if self.path_template and not PLACEHOLDER.search(self.path_template):
            raise ValueError(
                f"path_template '{self.path_template}' names no key type: put it in braces, as /orders/{{erp_order}}"
            )
        if self.event_type and not self.json_pointer:
            raise ValueError("event_type narrows json_pointer rules only: an event's data is what they read")
        if (self.attribute or self.json_pointer) and not self.key:
            raise ValueError("attribute and json_pointer rules need 'key' (the key type they produce)")
        return self

    def produces(self) -> list[str]:
        """The key types this rule yields: its ``key``, a template's placeholders, a regex's groups."""
        if self.path_template:
            return PLACEHOLDER.findall(self.path_template)
        if self.regex:
            return list(re.compile(self.regex).groupindex)
        return [self.key] if self.key else []


class StageMatch(Strict):
    """Which observations mark a stage as reached. Omitted fields match anything."""

    system: str = "*"
    operation: str = "*"
    kind: Literal["span", "log", "event"] | None = None
    outcome: Literal["ok", "error"] | None = "ok"


class StageDef(Strict):
    name: str
    match: list[StageMatch] = Field(min_length=1)
    sla: Duration | None = Field(None, description="Budget after the previous stage (or after 'after')")
    after: str | None = None
    deadline_attribute: str | None = Field(None, description="Absolute deadline carried on the order")


class LinesDef(Strict):
    """Line-level fulfilment: which observations ship which lines, and how many lines an order
    has. With it, an order is complete only when every line has shipped, and a line still
    outstanding when it is due (a backordered line by its promised date, any other by the
    order's) is an exception."""

    stage: str = Field(description="The stage whose observations ship lines; the first one reaches it")
    shipped: str = Field("/lines", description="JSON pointer into such an observation's payload: [{sku, qty}]")
    sku: str = Field("sku", description="Field of a shipped line naming the item")
    quantity: str = Field("qty", description="Field of a shipped line giving the quantity")
    shipment_key: str = Field("shipment", description="Identity key type naming a shipment")
    count_attribute: str | None = Field(None, description="Attribute carrying how many lines the order has")
    backordered_attribute: str | None = Field(None, description="Attribute listing the SKUs allocated later")
    backorder_due_attribute: str | None = Field(None, description="Attribute: when backordered lines should ship")

    @field_validator("shipped")
    @classmethod
    def _pointer(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError(f"'{value}' is not a JSON pointer: it must start with '/'")
        return value


class ProcessDef(Strict):
    """A process definition: its stages in order, each with a matching rule and an SLA."""

    starts_with: list[str] = Field(min_length=1, description="Identity key types that start this process")
    keys: list[str] = Field([], description="Further identity key types that link observations into it")
    stages: list[StageDef] = Field(min_length=1)
    calendar: str | None = None
    partner_stage: str | None = Field(None, description="The stage whose system is the transaction's partner")
    context: dict[str, list[str]] = Field({}, description="Business context field -> attribute names to read it from")
    lines: LinesDef | None = None

    @model_validator(mode="after")
    def _stage_refs(self) -> ProcessDef:
        names = [s.name for s in self.stages]
        if self.partner_stage and self.partner_stage not in names:
            raise ValueError(f"partner_stage '{self.partner_stage}' is not one of the stages")
        if self.lines and self.lines.stage not in names:
            raise ValueError(f"lines.stage '{self.lines.stage}' is not one of the stages")
        for stage in self.stages:
            if stage.after and stage.after not in names:
                raise ValueError(f"stage '{stage.name}' is 'after' unknown stage '{stage.after}'")
        return self


class Calendar(Strict):
    """Business days and cut-off: an order captured after the cut-off is due a business day later."""

    timezone: str = "UTC"
    cutoff: str = Field("14:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    workdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        ["mon", "tue", "wed", "thu", "fri"], min_length=1
    )
    holidays: frozenset[date] = Field(frozenset(), description="Days off: TOML dates or 'YYYY-MM-DD'")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        """Checked here, not when the first SLA is computed: a typo would stop every correlator pass."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'America/Chicago'") from None
        return value


class Partner(Strict):
    """A system syncwatch can act on: where it is and how to authenticate (by env var name)."""

    kind: Literal["marketplace", "erp", "wms", "3pl", "other"]
    base_url: str = Field(pattern=r"^https?://")
    token_env: str | None = Field(None, pattern=_ENV_NAME)
    timeout_s: float = Field(10.0, gt=0)
    rate_limit_per_s: float = Field(50.0, gt=0)
    alternates: list[str] = []
    hosts: list[str] = Field([], description="Other host names telemetry shows it under (url.full, server.address)")


class Scope(Strict):
    """What a user may act on: exceptions of these channels and partners (empty: all)."""

    channels: list[str] = []
    partners: list[str] = []


class User(Strict):
    """A person who may act: ``executive`` reads, ``agent`` fixes, ``lead`` also reroutes and runs bulk jobs."""

    role: Literal["executive", "agent", "lead"]
    scope: Scope = Scope()


class RetryPolicy(Strict):
    """Automatic retries of transient failures: exponential backoff with jitter, then a person."""

    enabled: bool = True
    categories: list[str] = ["throttled", "timeout", "partner_unavailable"]
    max_attempts: int = Field(4, ge=1, description="Automatic attempts before the exception waits for a person")
    backoff: Duration = Field(timedelta(seconds=30), description="Wait before the first automatic attempt")
    backoff_max: Duration = Field(timedelta(minutes=30), description="Longest wait between attempts")
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.2, ge=0, le=1, description="Share of each wait drawn at random, so retries spread out")
    interval_s: float = Field(15.0, gt=0, description="Seconds between policy runs inside `serve`")
    max_age: Duration = Field(
        timedelta(hours=24), description="A failure older than this is left to a person (a restart after days)"
    )
    breaker_failures: int = Field(
        5,
        ge=0,
        description="Automatic retries to one partner failing in a row as unavailable or timed out that open its"
        " circuit: its automatic retries then wait, one probe at a time (0: never)",
    )
    breaker_cooldown: Duration = Field(
        timedelta(minutes=5),
        gt=timedelta(0),
        le=timedelta(hours=6),
        description="While a partner's circuit is open, one automatic retry goes as a probe at most this often",
    )


class Actions(Strict):
    """How actions run: where their spans go, how long a claimed action is held, the retry policy."""

    otlp_endpoint: str | None = Field(
        None, pattern=r"^https?://", description="Collector for action spans (default: stored in-process)"
    )
    lease: Duration = Field(timedelta(minutes=2), description="A running action older than this was interrupted")
    confirm_within: Duration = Field(
        timedelta(hours=1),
        description="A retry or reroute no observation confirmed in this long opens its exception again",
    )
    policy: RetryPolicy = RetryPolicy()


class Collectors(Strict):
    """Limits of the collectors: what counts as clock skew, how big an item may be, when to push back."""

    max_clock_skew: Duration = Field(
        timedelta(hours=1),
        description="Future timestamps within this are stored, flagged syncwatch.clock_skew_s; beyond, quarantined",
    )
    max_attribute_bytes: int = Field(256 * 1024, gt=0, description="An item with a larger attribute is quarantined")
    max_inflight_writes: int = Field(8, gt=0, description="Requests written at once; more get 503 with Retry-After")
    retry_after: Duration = Field(timedelta(seconds=2), description="Retry-After sent with 429 and 503")


class HttpSource(Strict):
    """A sender of OTLP, events or webhooks; requests bearing its token are stored under its name."""

    token_env: str = Field(pattern=_ENV_NAME, description="Environment variable holding the bearer token")


def _paths(value: Any) -> Any:
    """One dotted path, or a list of them tried in order."""
    paths = [value] if isinstance(value, str) else value
    if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
        raise ValueError(f"expected a dotted path such as request.uri, or a list of them, got {value!r}")
    for path in paths:
        if path.startswith("/"):
            raise ValueError(f"'{path}' is a JSON pointer; a field map takes dotted paths, as request.uri")
    return paths


FieldPaths = Annotated[list[str], BeforeValidator(_paths)]


class FieldMapDef(Strict):
    """Where a JSON access-log line keeps each field: dotted paths, the first present wins."""

    time: FieldPaths = Field(min_length=1)
    method: FieldPaths = Field(min_length=1)
    path: FieldPaths = Field(min_length=1)
    status: FieldPaths = Field(min_length=1)
    duration: FieldPaths = []
    duration_unit: Literal["s", "ms", "us", "ns"] = "ms"
    time_is: Literal["start", "end"] = Field(
        "end", description="Whether the time field is when the request began (Kong, Envoy) or when it was logged"
    )
    system: FieldPaths = []
    client: FieldPaths = []
    user_agent: FieldPaths = []
    request_id: FieldPaths = []


BUILT_IN_FIELD_MAPS = ("kong", "envoy", "caddy", "aws_apigw")  # collectors.access_log.FIELD_MAPS


class Tailer(Strict):
    """A file `serve` tails (surviving rotation and truncation) and `ingest` can import once."""

    path: str
    format: Literal["combined", "json_access", "otlp_json", "cloudevents"]
    source: str | None = Field(None, description="Name stored with each observation (default: the path)")
    system: str = Field("gateway", description="System of access-log lines that name none")
    system_from_host: bool = False
    field_map: str = Field("kong", description="json_access: kong, envoy, caddy, aws_apigw or a [field_maps] name")
    request_time_unit: Literal["s", "ms", "us"] = "s"
    time_is: Literal["start", "end"] = Field(
        "end",
        description="combined: 'end' for nginx ($time_local is when the line was written), "
        "'start' for Apache (%t is when the request arrived)",
    )


class Webhook(Strict):
    """A partner's JSON notification at POST /v1/webhooks/NAME. Locations are JSON pointers
    ("/NotificationMetadata/NotificationId") or headers ("header:X-Shopify-Webhook-Id");
    the first present wins."""

    system: str
    id: list[str] = Field(min_length=1)
    type: list[str] = []
    type_value: str | None = None
    time: list[str] = []
    token_env: str | None = Field(None, pattern=_ENV_NAME)

    @field_validator("id", "type", "time")
    @classmethod
    def _locations(cls, locations: list[str]) -> list[str]:
        wrong = [where for where in locations if not (where.startswith(("/", "header:")) or where == "")]
        if wrong:
            raise ValueError(f"{', '.join(map(repr, wrong))}: a location is a JSON pointer ('/a/b') or 'header:Name'")
        return locations

    @model_validator(mode="after")
    def _has_type(self) -> Webhook:
        if not self.type and not self.type_value:
            raise ValueError("expected 'type' (locations) or 'type_value' (a fixed event type)")
        return self


class ConfigFile(Strict):
    """The whole config file."""

    settings: dict[str, Any] = {}
    key_types: dict[str, KeyType] = {}
    key_rules: list[KeyRule] = []
    processes: dict[str, ProcessDef] = {}
    calendars: dict[str, Calendar] = {}
    partners: dict[str, Partner] = {}
    runbooks: dict[str, str] = {}
    collectors: Collectors = Collectors()
    sources: dict[str, HttpSource] = {}
    tailers: list[Tailer] = []
    field_maps: dict[str, FieldMapDef] = {}
    webhooks: dict[str, Webhook] = {}
    users: dict[str, User] = {}
    actions: Actions = Actions()

    @model_validator(mode="after")
    def _references(self) -> ConfigFile:
        known = ", ".join(sorted(self.key_types))
        for i, rule in enumerate(self.key_rules):
            for key in rule.produces():
                if key not in self.key_types:
                    rule_text = ", ".join(f'{k} = "{v}"' for k, v in rule.model_dump(exclude_defaults=True).items())
                    raise ValueError(
                        f"key_rules #{i + 1} ({rule_text}) produces unknown key type '{key}' (known: {known})"
                    )
        owner: dict[str, str] = {}
        for name, process in self.processes.items():
            for key in [*process.starts_with, *process.keys]:
                if key not in self.key_types or not self.key_types[key].identity:
                    raise ValueError(f"processes.{name} names '{key}', which is not an identity key type")
                if owner.setdefault(key, name) != name:
                    raise ValueError(f"key type '{key}' belongs to both processes.{owner[key]} and processes.{name}")
            if process.calendar and process.calendar not in self.calendars:
                raise ValueError(f"processes.{name} uses unknown calendar '{process.calendar}'")
        for i, tailer in enumerate(self.tailers):
            if tailer.format == "json_access" and tailer.field_map not in (*BUILT_IN_FIELD_MAPS, *self.field_maps):
                raise ValueError(
                    f"tailers #{i + 1} ({tailer.path}) names field map '{tailer.field_map}', which is neither built in "
                    f"({', '.join(BUILT_IN_FIELD_MAPS)}) nor in [field_maps]"
                )
        for name, partner in self.partners.items():
            unknown = [a for a in partner.alternates if a not in self.partners]
            if unknown:
                raise ValueError(f"partners.{name}.alternates names unknown partners {unknown}")
        return self
