"""Settings refuse to run a production server with a placeholder secret."""

from __future__ import annotations

import pytest

from api.app import create_app
from engine.settings import PLACEHOLDER_SECRET, Settings


@pytest.mark.parametrize("secret", ["", PLACEHOLDER_SECRET])
def test_production_refuses_missing_or_placeholder_secret(secret: str) -> None:
    settings = Settings(env="production", secret_key=secret)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="AUTOMATIONS_SECRET_KEY"):
        create_app(settings)


def test_development_accepts_the_placeholder() -> None:
    Settings(env="development").check_production_ready()


def test_production_accepts_a_real_secret() -> None:
    Settings(env="production", secret_key="x" * 48).check_production_ready()  # type: ignore[arg-type]
