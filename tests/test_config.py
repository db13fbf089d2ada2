"""Configuration layers, validation errors naming file and key, secrets kept out of files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mma.config import load_config
from mma.errors import ConfigError


def _load(tmp_path: Path, text: str | None = None, env: dict[str, str] | None = None,
          system: str | None = None):
    user = None
    if text is not None:
        user = tmp_path / "user.toml"
        user.write_text(text)
    system_file = tmp_path / "system.toml"
    if system is not None:
        system_file.write_text(system)
    return load_config(user, environ=env or {}, system_file=system_file)


def test_defaults_give_sqlite_in_state_dir(tmp_path: Path) -> None:
    cfg = _load(tmp_path, env={"STATE_DIRECTORY": str(tmp_path / "st")})
    assert cfg.database_url == f"sqlite:///{tmp_path / 'st' / 'mma.sqlite'}"
    assert cfg.window_days("gw") == (-1.0, 14.0)
    assert cfg.window_days("neutrino") == (-365.0, 30.0)


def test_precedence_defaults_system_user_env(tmp_path: Path) -> None:
    system = '[scoring]\nmax_credible_level = 0.8\n[windows]\ngw = [-2, 10]\n'
    user = '[scoring]\nmax_credible_level = 0.7\n'
    cfg = _load(tmp_path, user, system=system)
    assert cfg.section("scoring")["max_credible_level"] == 0.7  # user beats system
    assert cfg.window_days("gw") == (-2.0, 10.0)  # system beats defaults; int -> float
    cfg = _load(tmp_path, user, env={"MMA_SCORING__MAX_CREDIBLE_LEVEL": "0.5"}, system=system)
    assert cfg.section("scoring")["max_credible_level"] == 0.5  # environment beats files


def test_mma_config_env_names_the_user_file(tmp_path: Path) -> None:
    user = tmp_path / "via-env.toml"
    user.write_text('[logging]\nlevel = "DEBUG"\n')
    cfg = load_config(environ={"MMA_CONFIG": str(user)}, system_file=tmp_path / "none")
    assert cfg.section("logging")["level"] == "DEBUG"
    assert str(user) in cfg.sources


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"user\.toml: unknown key 'scoring\.max_cl'"):
        _load(tmp_path, "[scoring]\nmax_cl = 0.9\n")


def test_wrong_type_names_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"user\.toml: 'windows\.gw' must be of type list"):
        _load(tmp_path, '[windows]\ngw = "two weeks"\n')
    with pytest.raises(ConfigError, match=r"'vetting\.ztf\.require_positive_subtraction'"):
        _load(tmp_path, "[vetting.ztf]\nrequire_positive_subtraction = 1\n")


def test_wrong_type_in_environment_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"environment .*scoring\.max_credible_level"):
        _load(tmp_path, env={"MMA_SCORING__MAX_CREDIBLE_LEVEL": "high"})


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        _load(tmp_path, "[scoring\n")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={}, system_file=tmp_path / "none")


def test_secret_in_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="looks like a secret"):
        _load(tmp_path, '[slack]\nwebhook_url = "https://hooks.example/x"\n')
    with pytest.raises(ConfigError, match=r"\[secrets\]"):
        _load(tmp_path, '[secrets]\nsmtp_password = "OTHER_VAR"\n')


def test_secrets_from_env_and_credentials_and_redacted(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "smtp_password").write_text("s3cr3t-smtp\n")
    env = {"MMA_SLACK_WEBHOOK_URL": "https://hooks.slack.test/T000/B000/XYZsecret",
           "CREDENTIALS_DIRECTORY": str(creds),
           "MMA_DATABASE__URL": "postgresql://mma:pgpass@db.test/mma"}
    cfg = _load(tmp_path, env=env)
    assert cfg.secret("slack_webhook_url") == env["MMA_SLACK_WEBHOOK_URL"]
    assert cfg.secret("smtp_password") == "s3cr3t-smtp"
    assert cfg.secret("gcn_client_secret") is None
    shown = cfg.render()
    for secret in ("XYZsecret", "s3cr3t-smtp", "pgpass"):
        assert secret not in shown
    assert "slack_webhook_url" in shown and "# set, value redacted" in shown
    assert "postgresql://mma:***@db.test/mma" in shown


def test_email_subscribers_are_validated_against_the_rules(tmp_path: Path) -> None:
    text = ('[[channels.email.subscribers]]\naddress = "a@example.org"\n'
            'max_p_chance = 0.05\nmessengers = ["gw"]\n')
    cfg = _load(tmp_path, text)
    assert cfg.section("channels.email")["subscribers"] == [
        {"address": "a@example.org", "max_p_chance": 0.05, "messengers": ["gw"]}]
    with pytest.raises(ConfigError, match=r"subscribers\[0\]\.max_pchance"):
        _load(tmp_path, '[[channels.email.subscribers]]\naddress = "a@x"\nmax_pchance = 1\n')
    with pytest.raises(ConfigError, match=r"subscribers\[0\]\.address' is required"):
        _load(tmp_path, "[[channels.email.subscribers]]\nmax_p_chance = 0.1\n")
    with pytest.raises(ConfigError, match=r"subscribers\[0\]\.max_p_chance' must be"):
        _load(tmp_path, '[[channels.email.subscribers]]\naddress = "a@x"\nmax_p_chance = "x"\n')


def test_kafka_client_tables_are_free_form_and_refuse_secrets(tmp_path: Path) -> None:
    """Any librdkafka property in the client tables; unknown keys still refused elsewhere."""
    cfg = _load(tmp_path, '[kafka.alert_client]\n"security.protocol" = "SASL_SSL"\n'
                          'sasl.username = "mma"\n')
    assert cfg.section("kafka.alert_client") == {"security.protocol": "SASL_SSL",
                                                 "sasl.username": "mma"}
    with pytest.raises(ConfigError, match=r"unknown key 'kafka\.alert_clients'"):
        _load(tmp_path, '[kafka.alert_clients]\n"client.id" = "x"\n')
    with pytest.raises(ConfigError, match=r"'kafka\.alert_client\.sasl\.password' looks like "
                                          r"a secret.*kafka_alert_sasl_password"):
        _load(tmp_path, '[kafka.alert_client]\n"sasl.password" = "hunter2"\n')
