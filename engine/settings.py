"""Runtime settings, read from the environment with the AUTOMATIONS_ prefix."""

from __future__ import annotations

import os
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.json_limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, HIGHEST_MAX_DEPTH

PLACEHOLDER_SECRET = "dev-insecure-secret-change-me"  # noqa: S105 - a marker, refused outside dev
# HMAC-SHA256 keys shorter than its 32-byte output weaken every signature made with them.
MIN_SECRET_BYTES = 32
_CREATE_KEYS = ", or unset it and create keys with `automations keys create`"


class ConfigurationError(ValueError):
    """Settings a process must not run with; the message is one line naming the variable."""


def check_url_port(variable: str, url: str) -> None:
    """ConfigurationError unless the URL's port can be read. Its client would raise from
    inside the process's start, quoting what it took for the port: with a `/` in the
    password, part of the password. The message repeats nothing of the URL."""
    try:
        urlsplit(url).port  # noqa: B018 - read for its ValueError
    except ValueError:
        raise ConfigurationError(
            f"{variable}: the port is not a number (a password holding / # ? @ or : is "
            "written percent-encoded, / as %2F)"
        ) from None


# The exit status of every process refusing its settings (the CLI's ExitCode.BAD_SETTINGS).
BAD_SETTINGS_EXIT = 5


class Settings(BaseSettings):
    """Every knob of the runtime; passed into factories, never read at import time."""

    model_config = SettingsConfigDict(env_prefix="AUTOMATIONS_", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite:///data/automations.sqlite3"
    # `transaction`: database_url is a pooler that hands each transaction to any server
    # connection (PgBouncer's pool_mode=transaction): no prepared statements (psycopg prepares
    # a statement it runs often, on one server session, and another client's statement of the
    # same name then meets it), and `automations db upgrade`, which needs a session of its own,
    # refused. `session`: PostgreSQL itself, or a pooler in session mode.
    database_pooling: Literal["session", "transaction"] = "session"
    broker_url: str = "redis://127.0.0.1:6379/0"
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    public_url: str = "http://127.0.0.1:8000"

    # A first API key, accepted besides the keys stored in the database (bootstrap, scripts).
    api_key: SecretStr | None = None
    max_body_bytes: int = Field(default=256 * 1024, gt=0)
    # Free JSON (an event's payload, a contact's properties): how deep and how large, as JSON.
    max_payload_depth: int = Field(default=DEFAULT_MAX_DEPTH, ge=1, le=HIGHEST_MAX_DEPTH)
    max_payload_bytes: int = Field(default=DEFAULT_MAX_BYTES, gt=0)
    # Requests per second per API key; 0 turns the limit off. Counted in Redis.
    rate_limit_per_second: int = Field(default=0, ge=0)
    rate_limit_redis_url: str | None = None
    # Bearer tokens for the operator endpoints; unset, they are open (see docs/security.md).
    metrics_token: SecretStr | None = None
    docs_token: SecretStr | None = None
    # Serve the API's documentation (/docs) and schema (/openapi.json) at all.
    docs_enabled: bool = True

    email_transport_url: str = "file:data/outbox"
    email_api_key: SecretStr | None = None

    # Steps due within this horizon are enqueued with a Celery countdown; later ones wait for
    # the sweeper. Keep it well under the broker's visibility timeout.
    countdown_horizon_seconds: float = Field(default=300, gt=0)
    visibility_timeout_seconds: int = Field(default=3600, gt=0)
    # Each worker tells Redis it is alive this often; one silent for three of these with no
    # connection to Redis left is dead, and what it held goes back to its queues at once. At
    # least a second, as the check counts its beats (`owner_timeout` in tasks/fetch.py).
    broker_heartbeat_seconds: float = Field(default=10, ge=1)
    sweeper_interval_seconds: float = Field(default=5, gt=0)
    # The sweeper is late (GET /health/sweeper answers 503) when its last completed tick is
    # older than this; unset, ten intervals and at least a minute (`sweeper_late_after`).
    sweeper_late_after_seconds: float | None = Field(default=None, gt=0)
    # A step ready this long without being claimed is assumed lost and enqueued again.
    stale_after_seconds: float = Field(default=30, gt=0)
    # A claimed step not finished within its lease is assumed abandoned by a dead worker.
    step_lease_seconds: float = Field(default=120, gt=0)
    # A step whose worker died this many times while running it (a pool child lost, a lease
    # taken over) fails with `worker_lost` instead of killing the next worker: see
    # engine/worker_loss.py and docs/configuration.md.
    step_max_worker_losses: int = Field(default=3, ge=1)
    # Delayed steps the sweeper promotes per tick.
    sweeper_batch_size: int = Field(default=1000, gt=0)
    # Steps the sweeper sends again per tick (expired leases, then lost messages, oldest first);
    # the rest wait for the next tick, so that one tick never floods the broker.
    sweeper_max_redispatch_per_tick: int = Field(default=2000, gt=0)
    # Each re-send of the same step waits twice as long as the one before (stale_after, 2x, 4x,
    # ...), up to this: a step stuck behind a long queue gets a few extra messages, not one a tick.
    redispatch_backoff_max_seconds: float = Field(default=600, gt=0)

    # Task events (received, started, succeeded) from every worker from the start. Off, a worker
    # sends them once Flower asks (Flower does every 5 s while it runs): about a sixth of a
    # step's CPU is saved while nobody watches. See docs/operations.md "Flower".
    task_events: bool = False
    # Instant steps (condition, contact changes) a worker executes right after the step that made
    # them ready, each with its own claim and commit, instead of a message each; 0 sends a
    # message for every step. Fewer tasks show in Flower; see docs/architecture.md.
    inline_steps: int = Field(default=8, ge=0, le=100)

    retry_max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=10, gt=0)
    retry_max_seconds: float = Field(default=3600, gt=0)

    # `database` (the database server's clock: every process, on any host, keeps the same
    # time), `system`, or `file:/path` (engine/clock.py): checked here, so that a bad value
    # stops every process at start, not the first task or request that builds a runtime.
    clock: str = Field(default="database", pattern=r"^(database|system|file:.+)$")
    # Multiplies delays and wait timeouts; below 1 only for demos ("1 day" in seconds). Never
    # above 1: a longer day would hold every delay and wait for years, or past the calendar.
    time_scale: float = Field(default=1.0, gt=0, le=1)
    # Testing only: see engine/faults.py.
    fault_injection: str = ""
    worker_concurrency: int | None = Field(default=None, ge=1)
    # uvicorn worker processes of `automations api`: one per core in production.
    api_workers: int = Field(default=1, ge=1)
    log_json: bool = False
    # Level of the runtime's logs in the processes the CLI starts (INFO: a line per step).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("public_url")
    @classmethod
    def _public_url_is_absolute(cls, value: str) -> str:
        """Emails carry `{public_url}/unsubscribe/{token}`: a link that is not an absolute
        http(s) URL would be dead in every email sent, found only by the recipients."""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an absolute http(s) URL, e.g. https://automations.example.com"
            )
        if parts.query or parts.fragment:
            raise ValueError(
                "must not hold a query or a fragment: links are made by appending a path"
            )
        return value

    @field_validator("database_pooling")
    @classmethod
    def _pooled_database_is_postgresql(cls, value: str, info: ValidationInfo) -> str:
        url = info.data.get("database_url", "")
        if value == "transaction" and not url.startswith("postgresql"):
            raise ValueError(
                "transaction is for PostgreSQL behind a transaction pooler (PgBouncer); "
                "AUTOMATIONS_DATABASE_URL is not a postgresql URL"
            )
        return value

    @field_validator("sweeper_late_after_seconds")
    @classmethod
    def _late_after_spans_ticks(cls, value: float | None, info: ValidationInfo) -> float | None:
        """Ticks come an interval apart, plus a tick's own time: a limit closer to the interval
        than two of them would call the sweeper late between two ordinary ticks."""
        interval = info.data.get("sweeper_interval_seconds")
        if value is not None and interval is not None and value < 2 * interval:
            raise ValueError(
                f"must be at least twice AUTOMATIONS_SWEEPER_INTERVAL_SECONDS ({interval:g} s), "
                "or unset"
            )
        return value

    @property
    def sweeper_late_after(self) -> float:
        """Seconds without a completed tick after which the sweeper is late."""
        if self.sweeper_late_after_seconds is not None:
            return self.sweeper_late_after_seconds
        return max(60.0, 10 * self.sweeper_interval_seconds)

    @field_validator("fault_injection")
    @classmethod
    def _faults_are_known(cls, value: str) -> str:
        """Read now, so that an unknown fault stops a process at start, naming the variable."""
        from engine.faults import checkpoint_from_setting

        checkpoint_from_setting(value)
        return value

    def process_environment(self) -> dict[str, str]:
        """This process's environment with these settings in place of its AUTOMATIONS_ ones:
        what a worker or server started from here needs to run with the same settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOMATIONS_")}
        for name, value in self.model_dump().items():
            if value is not None:
                secret = getattr(value, "get_secret_value", None)
                env[f"AUTOMATIONS_{name.upper()}"] = str(secret() if secret else value)
        return env

    def check_production_ready(self) -> None:
        """Refuse to run outside development with a missing, short or placeholder secret key,
        or a short bootstrap API key."""
        if self.env == "development":
            return
        secret = self.secret_key.get_secret_value()
        if secret == PLACEHOLDER_SECRET or len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"AUTOMATIONS_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes and not the "
                f"development placeholder when AUTOMATIONS_ENV={self.env}: set a long random "
                "value, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        # The bootstrap key opens every route and the dashboard, and is the one key a person
        # chooses: held to the secret's length, so it cannot be guessed like a password. So are
        # the operator endpoints' tokens, which nothing rate-limits either.
        chosen = (
            ("AUTOMATIONS_API_KEY", self.api_key, "it has full access", _CREATE_KEYS),
            ("AUTOMATIONS_METRICS_TOKEN", self.metrics_token, "it opens /metrics", ""),
            ("AUTOMATIONS_DOCS_TOKEN", self.docs_token, "it opens the API docs", ""),
        )
        for name, value, opens, instead in chosen:
            text = value.get_secret_value() if value else ""
            if text and len(text.encode()) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"{name} must be at least {MIN_SECRET_BYTES} bytes, or unset, when "
                    f"AUTOMATIONS_ENV={self.env}: {opens}. Set a long random value, e.g. "
                    f"`python -c 'import secrets; print(secrets.token_urlsafe(48))'`{instead}"
                )
