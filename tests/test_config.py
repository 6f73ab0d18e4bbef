import pytest

from quart_app.config import DEV_JWT_SECRET, AppEnv, load_settings
from quart_app.errors import ConfigError


def test_defaults_are_the_embedded_mode():
    settings = load_settings({})
    assert settings.app_env is AppEnv.DEVELOPMENT
    assert settings.database_url == "sqlite:///pulse.db"
    assert settings.redis_url is None
    assert settings.jwt_secret == DEV_JWT_SECRET
    assert settings.limits.max_frame_bytes == 4096
    assert settings.limits.max_subscriptions == 100
    assert settings.limits.max_connections_per_user == 20
    assert settings.history.size == 1000 and settings.history.ttl_seconds == 600
    assert settings.ws_deflate is False


def test_production_without_jwt_secret_refuses():
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        load_settings({"APP_ENV": "production"})


def test_production_with_secret_starts_without_dev_api_key():
    settings = load_settings({"APP_ENV": "production", "JWT_SECRET": "x" * 40})
    assert settings.production and settings.api_key is None


@pytest.mark.parametrize("env, variable", [
    ({"DATABASE_URL": "mysql://localhost/db"}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://"}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://localhost"}, "DATABASE_URL"),
    ({"DATABASE_URL": "sqlite://relative.db"}, "DATABASE_URL"),
    ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
    ({"REDIS_URL": "redis://localhost:notaport"}, "REDIS_URL"),
    ({"PORT": "eighty"}, "PORT"),
    ({"PULSE_MAX_FRAME_BYTES": "4k"}, "PULSE_MAX_FRAME_BYTES"),
    ({"PULSE_MAX_SUBSCRIPTIONS": "0"}, "PULSE_MAX_SUBSCRIPTIONS"),
    ({"PULSE_MAX_MESSAGES_PER_SECOND": "fast"}, "PULSE_MAX_MESSAGES_PER_SECOND"),
    ({"PULSE_HISTORY_TTL_SECONDS": "nan"}, "PULSE_HISTORY_TTL_SECONDS"),
    ({"PULSE_WS_DEFLATE": "maybe"}, "PULSE_WS_DEFLATE"),
    ({"APP_ENV": "staging"}, "APP_ENV"),
])
def test_malformed_values_fail_naming_the_variable(env, variable):
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert variable in info.value.detail


def test_values_are_typed():
    settings = load_settings({
        "DATABASE_URL": "postgres://u@db:5432/pulse", "REDIS_URL": "redis://r:6380/1",
        "PORT": "9000", "PULSE_WS_DEFLATE": "true", "PULSE_HISTORY_SIZE": "50",
        "PULSE_MAX_MESSAGES_PER_SECOND": "7.5"})
    assert settings.database_url == "postgresql://u@db:5432/pulse"
    assert settings.database_dialect == "postgresql"
    assert settings.redis_url == "redis://r:6380/1"
    assert settings.port == 9000 and settings.ws_deflate is True
    assert settings.history.size == 50
    assert settings.limits.max_messages_per_second == 7.5


def test_cli_refuses_production_without_secret(monkeypatch, capsys):
    from quart_app.__main__ import main

    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    assert main(["serve", "--port", "0"]) == 2
    assert "JWT_SECRET" in capsys.readouterr().err
