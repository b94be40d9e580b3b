"""Settings refuse to run a server outside development with a missing, short or placeholder
secret."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from engine.settings import MIN_SECRET_BYTES, PLACEHOLDER_SECRET, ConfigurationError, Settings
from tasks.app import create_celery_app
from wiring.server import create_server

REFUSED = ["", "short", "x" * (MIN_SECRET_BYTES - 1), "é" * 15 + "x", PLACEHOLDER_SECRET]


@pytest.mark.parametrize("secret", REFUSED)
@pytest.mark.parametrize("env", ["production", "test"])
def test_outside_development_refuses_a_weak_secret(secret: str, env: str) -> None:
    settings = Settings(env=env, secret_key=secret)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="AUTOMATIONS_SECRET_KEY") as refused:
        settings.check_production_ready()
    assert "\n" not in str(refused.value)
    if secret != PLACEHOLDER_SECRET:
        assert secret not in str(refused.value) or not secret
    # Every process builds its app with a factory that checks: the API and every Celery one.
    with pytest.raises(ConfigurationError):
        create_server(settings)
    with pytest.raises(ConfigurationError):
        create_celery_app(settings)


def test_development_accepts_the_placeholder() -> None:
    Settings(env="development").check_production_ready()


@pytest.mark.parametrize("secret", ["x" * MIN_SECRET_BYTES, "é" * 16, "x" * 48])
def test_production_accepts_a_secret_of_32_bytes_or_more(secret: str) -> None:
    Settings(env="production", secret_key=secret).check_production_ready()  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["admin", "x" * (MIN_SECRET_BYTES - 1), "é" * 15 + "x"])
@pytest.mark.parametrize("env", ["production", "test"])
def test_outside_development_refuses_a_short_bootstrap_api_key(key: str, env: str) -> None:
    """AUTOMATIONS_API_KEY has full access, API and dashboard: a short one could be guessed
    (the rate limit is off by default), so it is refused like a short secret key."""
    settings = Settings(env=env, secret_key="s" * 48, api_key=key)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="AUTOMATIONS_API_KEY") as refused:
        settings.check_production_ready()
    assert "\n" not in str(refused.value) and key not in str(refused.value)
    with pytest.raises(ConfigurationError):
        create_server(settings)
    with pytest.raises(ConfigurationError):
        create_celery_app(settings)


@pytest.mark.parametrize("name", ["metrics_token", "docs_token"])
def test_outside_development_refuses_a_short_operator_token(name: str) -> None:
    """/metrics and the API docs are guarded by a token a person chooses, and nothing limits
    guesses: a short one is refused like a short API key; a long or absent one is fine."""
    variable = f"AUTOMATIONS_{name.upper()}"
    settings = Settings(env="production", secret_key="s" * 48, **{name: "letmein"})
    with pytest.raises(ConfigurationError, match=variable) as refused:
        settings.check_production_ready()
    assert "letmein" not in str(refused.value)
    with pytest.raises(ConfigurationError):
        create_server(settings)
    for value in (None, "", "t" * MIN_SECRET_BYTES):
        Settings(env="production", secret_key="s" * 48, **{name: value}).check_production_ready()
    Settings(env="development", **{name: "dev"}).check_production_ready()


@pytest.mark.parametrize("key", [None, "", "k" * MIN_SECRET_BYTES])
def test_a_long_or_absent_bootstrap_api_key_is_accepted(key: str | None) -> None:
    # docker-compose.yml passes an unset AUTOMATIONS_API_KEY as an empty string: no key.
    Settings(env="production", secret_key="s" * 48, api_key=key).check_production_ready()  # type: ignore[arg-type]
    Settings(env="development", api_key="dev").check_production_ready()  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [1.5, 86400.0, 1e9])
def test_a_time_scale_that_would_stretch_delays_is_refused(scale: float) -> None:
    """Above 1, "1 day" lasts longer than a day: at 86400 (a day's seconds, mistaken for how
    long a day lasts) a 3-day delay ends in 700 years, and a 30-day wait leaves the calendar."""
    with pytest.raises(ValidationError) as refused:
        Settings(time_scale=scale)
    assert [error["loc"] for error in refused.value.errors()] == [("time_scale",)]
    Settings(time_scale=1.0)
    Settings(time_scale=3 / 86400)  # the demo's 3-second days


@pytest.mark.parametrize(
    "url", ["notaurl", "127.0.0.1:8000", "ftp://x.example", "https://", "https://x.example/?a=1"]
)
def test_a_public_url_that_would_make_dead_unsubscribe_links_is_refused(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(public_url=url)
    assert [error["loc"] for error in refused.value.errors()] == [("public_url",)]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "https://automations.example.com/base/", "http://[::1]:80"]
)
def test_an_absolute_public_url_is_accepted(url: str) -> None:
    assert Settings(public_url=url).public_url == url


def test_a_process_started_with_the_environment_gets_the_same_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTOMATIONS_INLINE_STEPS", "3")  # this process's, replaced
    settings = Settings(inline_steps=0, secret_key="s" * 40, email_api_key=None)  # type: ignore[arg-type]
    env = settings.process_environment()
    assert env["AUTOMATIONS_INLINE_STEPS"] == "0"
    assert env["AUTOMATIONS_SECRET_KEY"] == "s" * 40  # the secret itself, not its mask
    assert "AUTOMATIONS_EMAIL_API_KEY" not in env  # unset stays unset
    assert env["PATH"] == os.environ["PATH"]
    monkeypatch.setattr(os, "environ", env)
    assert Settings() == settings


@pytest.mark.parametrize("seconds", [0.5, 0.0, -1.0])
def test_a_broker_heartbeat_under_a_second_is_refused(seconds: float) -> None:
    """The dead-worker check counts three beats of at least a second: a shorter one would be
    taken as asked and not honoured."""
    with pytest.raises(ValidationError) as refused:
        Settings(broker_heartbeat_seconds=seconds)
    assert [error["loc"] for error in refused.value.errors()] == [("broker_heartbeat_seconds",)]
    Settings(broker_heartbeat_seconds=1)
