"""Settings refuse to run a server outside development with a missing, short or placeholder
secret."""

from __future__ import annotations

import pytest

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
