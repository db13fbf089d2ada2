"""Configuration layers, validation errors naming file and key, secrets kept out of files."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from mma.config import load_config
from mma.errors import ConfigError
from mma.models import DEFAULT_EVENT_CLASS, EVENT_CLASSES
from mma.windows import LEGACY_WINDOW_KEYS


def _load(tmp_path: Path, text: str | None = None, env: dict[str, str] | None = None,
          system: str | None = None):
    user = None
    if text is not None:
        user = tmp_path / "user.toml"
        user.write_text(text)
    system_file = tmp_path / "system.toml"
    if system is not None:
        system_file.write_text(system)
    # A test that gives a system file asks for it, as `--config FILE --system-config` does.
    return load_config(user, environ=env or {}, system_file=system_file,
                       system=True if system is not None else None)


def test_defaults_give_sqlite_in_state_dir(tmp_path: Path) -> None:
    cfg = _load(tmp_path, env={"STATE_DIRECTORY": str(tmp_path / "st")})
    assert cfg.database_url == f"sqlite:///{tmp_path / 'st' / 'mma.sqlite'}"
    assert cfg.window_days("gw.cbc") == (-1.0, 14.0)
    assert cfg.window_days("neutrino.track") == (-365.0, 30.0)


def test_precedence_defaults_system_user_env(tmp_path: Path) -> None:
    system = '[scoring]\nmax_credible_level = 0.8\n[windows]\n"gw.cbc" = [-2, 10]\n'
    user = '[scoring]\nmax_credible_level = 0.7\n'
    cfg = _load(tmp_path, user, system=system)
    assert cfg.section("scoring")["max_credible_level"] == 0.7  # user beats system
    assert cfg.window_days("gw.cbc") == (-2.0, 10.0)  # system beats defaults; int -> float
    assert cfg.window_days("gw.burst") == (-1.0, 14.0)  # a class of its own
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
    # The password is left out, so that the output still loads as a configuration file.
    assert 'url = "postgresql://mma@db.test/mma"  # password left out' in shown


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


# ------------------------------------------------------------------ [windows] by event class

DEFAULT_WINDOWS = {
    "gw.cbc": (-1.0, 14.0), "gw.burst": (-1.0, 14.0), "grb": (-1.0, 10.0),
    "xray": (-1.0, 14.0), "neutrino.track": (-365.0, 30.0),
    "neutrino.cascade": (-365.0, 30.0), "neutrino.gw_followup": (-1.0, 14.0),
    "neutrino.sn_burst": (-0.0417, 14.0), "watch": (0.0, 365.0),
}  # fmt: skip


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "mma.config" and r.levelno == logging.WARNING]


def test_every_event_class_has_a_valid_default(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mma.config"):
        cfg = _load(tmp_path)
    assert set(cfg.section("windows")) == set(EVENT_CLASSES)  # no messenger keys left
    for event_class in EVENT_CLASSES:
        start, end = cfg.window_days(event_class)
        assert math.isfinite(start) and math.isfinite(end) and start < end, event_class
    assert {c: cfg.window_days(c) for c in EVENT_CLASSES} == DEFAULT_WINDOWS
    assert set(DEFAULT_EVENT_CLASS.values()) <= set(EVENT_CLASSES)
    assert _warnings(caplog) == []  # the packaged defaults use no legacy key


def test_unknown_event_class_is_an_error(tmp_path: Path) -> None:
    cfg = _load(tmp_path)
    with pytest.raises(ConfigError, match=r"'gw' is a messenger, whose classes are gw\.cbc"):
        cfg.window_days("gw")
    for name in ("neutrino", "optical", "gw.bns", ""):
        with pytest.raises(ConfigError, match="no time window for event class"):
            cfg.window_days(name)


def test_legacy_messenger_keys_still_load(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """An old file: gw/neutrino set each class of the messenger not named in the file."""
    old = ('[windows]\ngw = [-2, 10]\ngrb = [-0.5, 5]\nxray = [-1, 7]\n'
           'neutrino = [-100, 20]\n"neutrino.sn_burst" = [0, 3]\n')
    with caplog.at_level(logging.WARNING, logger="mma.config"):
        cfg = _load(tmp_path, old)
    assert cfg.window_days("gw.cbc") == cfg.window_days("gw.burst") == (-2.0, 10.0)
    assert cfg.window_days("grb") == (-0.5, 5.0) and cfg.window_days("xray") == (-1.0, 7.0)
    for event_class in ("neutrino.track", "neutrino.cascade", "neutrino.gw_followup"):
        assert cfg.window_days(event_class) == (-100.0, 20.0)
    assert cfg.window_days("neutrino.sn_burst") == (0.0, 3.0)  # named: the legacy key yields
    assert "gw" not in cfg.section("windows") and "neutrino" not in cfg.section("windows")
    # One warning per legacy key (grb and xray are class names: no warning), naming the
    # key and the classes it was applied to.
    messages = _warnings(caplog)
    assert len(messages) == 2
    gw, neutrino = sorted(messages, key=lambda m: "neutrino" in m)
    assert "user.toml" in gw and "'gw'" in gw and "gw.cbc, gw.burst" in gw
    assert "'neutrino'" in neutrino
    assert "neutrino.track, neutrino.cascade, neutrino.gw_followup" in neutrino
    assert "neutrino.sn_burst" not in neutrino
    assert set(LEGACY_WINDOW_KEYS) == {"gw", "neutrino"}


def test_legacy_key_applies_per_file(tmp_path: Path) -> None:
    """A user file's gw beats the system file's gw.cbc; a class in the user file beats gw."""
    cfg = _load(tmp_path, "[windows]\ngw = [-2, 10]\n",
                system='[windows]\n"gw.cbc" = [-3, 5]\n')
    assert cfg.window_days("gw.cbc") == cfg.window_days("gw.burst") == (-2.0, 10.0)
    cfg = _load(tmp_path, '[windows]\n"gw.burst" = [-1, 1]\n', system="[windows]\ngw = [-2, 10]\n")
    assert cfg.window_days("gw.cbc") == (-2.0, 10.0) and cfg.window_days("gw.burst") == (-1.0, 1.0)


def test_legacy_key_shadowed_by_every_class_is_reported(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    text = '[windows]\ngw = [-9, 9]\n"gw.cbc" = [-1, 2]\n"gw.burst" = [-1, 3]\n'
    with caplog.at_level(logging.WARNING, logger="mma.config"):
        cfg = _load(tmp_path, text)
    assert cfg.window_days("gw.cbc") == (-1.0, 2.0) and cfg.window_days("gw.burst") == (-1.0, 3.0)
    (message,) = _warnings(caplog)
    assert "'gw'" in message and "ignored" in message


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('"grb" = [10, -1]', r"'windows\.grb' = \[10, -1\]: the start must be before the end"),
        ('"neutrino.sn_burst" = [1, 1]', r"'windows\.neutrino\.sn_burst'.*start must be before"),
        ("gw = [14, -1]", r"'windows\.gw'.*start must be before"),  # a legacy key too
        ('"gw.cbc" = [nan, 14]', r"'windows\.gw\.cbc'.*not two finite numbers"),
        ('"gw.cbc" = [-1, inf]', r"'windows\.gw\.cbc'.*not two finite numbers"),
        ('"gw.cbc" = [-1, 14, 20]', r"'windows\.gw\.cbc' must be two numbers"),
        ('"gw.cbc" = [-1]', r"'windows\.gw\.cbc' must be two numbers"),
        ('"gw.cbc" = [true, 14]', r"'windows\.gw\.cbc' must be two numbers"),
        ('"gw.cbc" = 14', r"'windows\.gw\.cbc' must be of type list"),
        ('"gw.bns" = [-1, 14]', r"unknown key 'windows\.gw\.bns'"),
        ("optical = [-1, 14]", r"unknown key 'windows\.optical'"),
    ],
)
def test_bad_windows_are_refused_naming_the_key(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=r"user\.toml: .*" + match):
        _load(tmp_path, "[windows]\n" + text + "\n")


def test_unquoted_dotted_class_is_the_same_key(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "[windows]\ngw.cbc = [-2, 3]\n[windows.neutrino]\nsn_burst = [0, 1]\n")
    assert cfg.window_days("gw.cbc") == (-2.0, 3.0)
    assert cfg.window_days("neutrino.sn_burst") == (0.0, 1.0)


def test_windows_from_the_environment(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {"MMA_WINDOWS__NEUTRINO_SN_BURST": "[-0.1, 7]", "MMA_WINDOWS__GW_BURST": "[-1, 2]"}
    cfg = _load(tmp_path, env=env)
    assert cfg.window_days("neutrino.sn_burst") == (-0.1, 7.0)
    assert cfg.window_days("gw.burst") == (-1.0, 2.0) and cfg.window_days("gw.cbc") == (-1.0, 14.0)
    with caplog.at_level(logging.WARNING, logger="mma.config"):
        cfg = _load(tmp_path, env={"MMA_WINDOWS__GW": "[-2, 10]"})
    assert cfg.window_days("gw.burst") == (-2.0, 10.0)
    assert any("environment" in m and "'gw'" in m for m in _warnings(caplog))
    with pytest.raises(ConfigError, match=r"environment .*'windows\.grb'.*start must be"):
        _load(tmp_path, env={"MMA_WINDOWS__GRB": "[3, 1]"})


def test_render_quotes_the_dotted_classes(tmp_path: Path) -> None:
    shown = _load(tmp_path).render()
    assert '"gw.cbc" = [-1.0, 14.0]' in shown
    assert '"neutrino.sn_burst" = [-0.0417, 14.0]' in shown
    assert "\ngrb = [-1.0, 10.0]" in shown


def test_every_bad_window_and_key_of_every_layer_is_reported(tmp_path: Path) -> None:
    """One error per line, for the windows, the other keys and each layer, all at once."""
    system = '[windows]\n"gw.cbc" = [3, 1]\n"grb" = [-1]\n[scoring]\nmax_credible_level = "x"\n'
    user = '[windows]\noptical = [-1, 14]\n[kafka]\nbatch = 0\n'
    env = {"MMA_DAEMON__HEALTH_PORT": "-1"}
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, user, env=env, system=system)
    lines = str(raised.value).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        str(tmp_path / "system.toml")] * 3 + [str(tmp_path / "user.toml")] * 2 + [
        "environment (MMA_*)"]
    for part in ("'windows.gw.cbc' = [3, 1]", "'windows.grb' must be two numbers",
                 "'scoring.max_credible_level' must be of type float",
                 "unknown key 'windows.optical'", "'kafka.batch' must be a number >= 1",
                 "'daemon.health_port' must be a number in [0, 65535], got -1"):
        assert sum(part in line for line in lines) == 1, part

