"""``mma config check``/``init``/``show``: every problem at once, a starter that passes,
output that loads back, opt-in sources and ``--config`` without the system file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import mma.config
from mma.cli import main
from mma.config import Config, load_config
from mma.config_starter import STARTER
from mma.config_values import value_problems
from mma.errors import ConfigError
from mma.registry import Registry
from mma.service import sources
from mma.service.preflight import daemon_problems

SAMPLE = Path(__file__).parents[1] / "mma" / "data" / "sample"
MMA = str(Path(sys.executable).with_name("mma"))

# A new user's configuration as reported: each line crashed later, or never ran.
BAD_VALUES = """
[channels.email]
security = "tls"
[logging]
level = "verbose"
[windows]
"gw.cbc" = [14.0, -1.0]
[kafka]
batch = 0
alert_topics = ["ztf:ztf_alerts"]
[daemon]
health_port = 70000
[channels.slack.rules]
max_p_chance = 1.5
min_p_astro = -0.5
[scoring]
max_cl = 0.9
"""
BAD_VALUE_MESSAGES = (
    "'channels.email.security' must be one of starttls | ssl | none, got 'tls'",
    "'logging.level' must be empty or one of DEBUG | INFO | WARNING | ERROR | CRITICAL",
    "'windows.gw.cbc' = [14.0, -1.0]: the start must be before the end",
    "'kafka.batch' must be a number >= 1, got 0",
    "'kafka.alert_bootstrap_servers' is required when 'kafka.alert_topics' is set",
    "'daemon.health_port' must be a number in [0, 65535], got 70000",
    "'channels.slack.rules.max_p_chance' must be a number in [0, 1], got 1.5",
    "'channels.slack.rules.min_p_astro' must be a number in [0, 1], got -0.5",
    "unknown key 'scoring.max_cl'",
)
# What the daemon needs: handler names, kinds, the secrets of what is enabled.
BAD_NEEDS = """
[kafka]
notice_topics = ["lvk:igwn.gwalert", "nosuch:gcn.topic", "ztf:gcn.other"]
[channels.slack]
enabled = true
[channels.email]
enabled = true
username = "mma"
recipients = ["oncall@example.org"]
[priors]
tail_fraction = 2.0
[distance]
host_probability_min = 0.0
"""
BAD_NEED_MESSAGES = (
    "[priors] tail_fraction must be a probability in [0, 1]",
    "[distance] need 0 < host_probability_min <= host_probability_max < 1",
    "'kafka.notice_topics': 'nosuch:gcn.topic' names no handler",
    "'kafka.notice_topics': 'ztf:gcn.other': ztf is an alert handler, not a notice handler",
    "secret gcn_client_id is not set (environment variable MMA_GCN_CLIENT_ID",
    "secret gcn_client_secret is not set",
    "secret slack_webhook_url is not set",
    "secret smtp_password is not set",
)
SECRETS = {"MMA_GCN_CLIENT_ID": "id", "MMA_GCN_CLIENT_SECRET": "s3cret",
           "MMA_SLACK_WEBHOOK_URL": "https://hooks.slack.test/T/B/x", "MMA_SMTP_PASSWORD": "pw"}


@pytest.fixture(autouse=True)
def _no_outside_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No /etc/mma/mma.toml, $MMA_CONFIG or MMA_* variable of the machine leaks in."""
    monkeypatch.setattr(mma.config, "SYSTEM_CONFIG", tmp_path / "etc-mma.toml")
    for name in [n for n in os.environ if n.startswith("MMA_")]:
        monkeypatch.delenv(name)


def _write(tmp_path: Path, text: str, name: str = "mma.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _check(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["--config", str(path), "config", "check", *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_every_bad_value_is_reported_at_once_naming_file_and_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, BAD_VALUES)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    lines = str(raised.value).splitlines()
    assert len(lines) == len(BAD_VALUE_MESSAGES)
    for message in BAD_VALUE_MESSAGES:
        assert any(line.startswith(f"{path}: ") and message in line for line in lines), message
    code, shown = _check(path, capsys)
    assert code == 2
    for message in BAD_VALUE_MESSAGES:
        assert message in shown


def test_every_daemon_need_is_reported_at_once(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, shown = _check(_write(tmp_path, BAD_NEEDS), capsys)
    assert code == 2
    for message in BAD_NEED_MESSAGES:
        assert message in shown, message
    assert "configuration OK" not in shown


def test_the_secrets_in_the_environment_satisfy_the_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    text = BAD_NEEDS.replace(', "nosuch:gcn.topic", "ztf:gcn.other"', "")
    text = text[:text.index("[priors]")]
    path = _write(tmp_path, text)
    assert _check(path, capsys)[0] == 2  # the secrets are missing
    assert _check(path, capsys, "--no-secrets")[0] == 0
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    code, shown = _check(path, capsys)
    assert code == 0 and "configuration OK" in shown
    assert "sources: notices: 1 topics from GCN Kafka (gcn.nasa.gov)\n" in shown
    for value in SECRETS.values():
        assert value not in shown


def test_a_mirror_broker_needs_no_gcn_credentials(tmp_path: Path) -> None:
    text = '[kafka]\nnotice_topics = ["*"]\ngcn_bootstrap_servers = "mirror.example.org:9092"\n'
    config = load_config(_write(tmp_path, text), environ={})
    assert daemon_problems(config) == []
    config = load_config(_write(tmp_path, '[kafka]\nnotice_topics = ["*"]\n'), environ={})
    assert [p.split(" is not set")[0] for p in daemon_problems(config)] == [
        "secret gcn_client_id", "secret gcn_client_secret"]


def test_slack_destinations_need_their_own_webhook_secret(tmp_path: Path) -> None:
    text = ('[channels.slack]\nenabled = true\n[daemon]\nspool_dir = "/srv/spool"\n'
            '[[channels.slack.destinations]]\nname = "gw"\nwebhook_secret = "SLACK_GW"\n')
    path = _write(tmp_path, text)
    problems = daemon_problems(load_config(path, environ={}))
    assert len(problems) == 1 and "webhook_secret SLACK_GW is not set" in problems[0]
    assert daemon_problems(load_config(path, environ={"SLACK_GW": "https://x.test/h"})) == []


def test_no_source_at_all_stops_check_and_run(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "[logging]\nlevel = \"INFO\"\n")
    code, shown = _check(path, capsys)
    assert code == 2 and "nothing to consume" in shown
    assert main(["--config", str(path), "run", "--idle-exit", "1"]) == 2
    assert "nothing to consume" in capsys.readouterr().err


def test_init_writes_a_starter_that_check_accepts(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "etc" / "mma.toml"
    assert main(["config", "init", "-o", str(target)]) == 0
    assert target.read_text() == STARTER and (target.stat().st_mode & 0o777) == 0o640
    capsys.readouterr()
    code, shown = _check(target, capsys)
    assert code == 0 and "configuration OK" in shown
    assert "sources: files: /var/lib/mma/spool\n" in shown  # no Kafka, no GCN
    config = load_config(target, environ={})
    assert config.section("daemon")["spool_dir"] == "/var/lib/mma/spool"
    assert not config.section("kafka")["notice_topics"]
    assert "#notice_topics = [" in STARTER  # the GCN topics are there, commented
    # Refused without --force, replaced with it.
    target.write_text("# mine\n")
    assert main(["config", "init", "-o", str(target)]) == 2
    assert "not overwritten (use --force" in capsys.readouterr().err
    assert target.read_text() == "# mine\n"
    assert main(["config", "init", "-o", str(target), "--force"]) == 0
    assert target.read_text() == STARTER


def test_the_commented_gcn_topics_of_the_starter_are_real(tmp_path: Path) -> None:
    """Uncommenting the starter's topics gives a configuration the daemon accepts."""
    text = STARTER.replace("#notice_topics", "notice_topics").replace("#                 ",
                                                                      "                  ")
    config = load_config(_write(tmp_path, text), environ=SECRETS)
    assert len(config.section("kafka")["notice_topics"]) == 6
    assert daemon_problems(config) == []


def _rich_config(tmp_path: Path) -> Config:
    text = """
[database]
url = "postgresql+psycopg://mma:pa55@db.example.org/mma"
[windows]
"gw.cbc" = [-2.0, 21.0]
[kafka]
notice_topics = ["*", "lvk:igwn.gwalert.test"]
gcn_domain = "test.gcn.nasa.gov"
[kafka.alert_client]
"security.protocol" = "SASL_SSL"
"socket.keepalive.enable" = true
[channels.email]
recipients = ["a@example.org", "quote\\"d@example.org"]
[[channels.email.subscribers]]
address = "oncall@example.org"
messengers = ["gw"]
max_p_chance = 0.05
[priors]
"signal_days.grb" = [0.0, 2.5]
"""
    env = {"MMA_SMTP_PASSWORD": "pw", "MMA_SCORING__MAX_CREDIBLE_LEVEL": "0.95"}
    return load_config(_write(tmp_path, text, "rich.toml"), environ=env)


def test_show_loads_back_as_the_same_configuration(tmp_path: Path) -> None:
    config = _rich_config(tmp_path)
    shown = config.render()
    assert "pa55" not in shown and "smtp_password" in shown
    again = load_config(_write(tmp_path, shown, "shown.toml"), environ={})
    expected: dict[str, Any] = json.loads(json.dumps(config.data))
    expected["database"]["url"] = "postgresql+psycopg://mma@db.example.org/mma"
    assert json.loads(json.dumps(again.data)) == expected
    assert again.window_days("gw.cbc") == (-2.0, 21.0)


def test_show_of_the_defaults_loads_back(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(_write(tmp_path, "")), "config", "show"]) == 0
    shown = capsys.readouterr().out
    config = load_config(_write(tmp_path, shown, "shown.toml"), environ={})
    assert config.data == load_config(_write(tmp_path, "", "empty.toml"), environ={}).data


def test_config_flag_reads_no_system_file(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    system = _write(tmp_path, "[scoring]\nmax_credible_level = 0.5\n", "etc-mma.toml")
    user = _write(tmp_path, "[logging]\nlevel = \"DEBUG\"\n", "user.toml")
    alone = load_config(user, environ={})
    assert alone.section("scoring")["max_credible_level"] == 0.99
    assert str(system) not in alone.sources
    with_system = load_config(user, environ={}, system=True)
    assert with_system.section("scoring")["max_credible_level"] == 0.5
    assert with_system.sources == ("defaults", str(system), str(user))
    # $MMA_CONFIG (what the units set) keeps the system file as a base; named twice, once.
    via_env = load_config(environ={"MMA_CONFIG": str(user)})
    assert via_env.sources == ("defaults", str(system), str(user))
    assert load_config(environ={"MMA_CONFIG": str(system)}).sources == ("defaults", str(system))
    # The command line: --config FILE does not see a broken system file.
    system.write_text("[scoring]\nmax_cl = 1\n")
    assert main(["--config", str(user), "config", "show"]) == 0
    assert main(["config", "show"]) == 2
    assert "etc-mma.toml: unknown key 'scoring.max_cl'" in capsys.readouterr().err


@pytest.mark.parametrize(("key", "value", "message"), [
    ("channels.email.port", 0, "a number in [1, 65535]"),
    ("kafka.poll_timeout_seconds", 0.0, "a number > 0"),
    ("daemon.rescore_interval_seconds", -5.0, "a number > 0"),
    ("outbox.max_attempts", 0, "a number >= 1"),
    ("distance.reach_quantile", 1.0, "a number in (0, 1)"),
    ("vetting.ztf.min_rb", 2.0, "a number in [0, 1]"),
    ("channels.kafka.rules.max_credible_level", 0.0, "a number in (0, 1]"),
    ("kafka.gcn_domain", "gcn.example.org", "one of gcn.nasa.gov | test.gcn.nasa.gov"),
    ("kafka.notice_topics", ["lvk"], "'handler:topic' entries"),
    ("channels.email.subscribers[0].min_has_ns", -0.1, "a number in [0, 1]"),
])
def test_value_table(key: str, value: Any, message: str) -> None:
    data: dict[str, Any] = json.loads(json.dumps(load_config(environ={}, system=False).data))
    data["channels"]["email"]["subscribers"] = [{"address": "a@example.org", "min_has_ns": 0.0}]
    node: Any = data
    parts = key.replace("[0]", ".0").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    node[parts[-1]] = value
    problems = value_problems(data, [("f.toml", {"x": 1})])
    assert len(problems) == 1 and f"'{key}' must be {message}" in problems[0], problems
    assert problems[0].startswith("packaged default.toml: ")  # no layer set it


def test_topics_are_opt_in(tmp_path: Path) -> None:
    registry = Registry()

    def topics(text: str, kind: str) -> list[str]:
        config = load_config(_write(tmp_path, text), environ={})
        return sources.topics_of(config, sources.registry_of(config), kind)

    assert topics("", "notice") == [] and topics("", "alert") == []
    every = topics('[kafka]\nnotice_topics = ["*"]\n', "notice")
    assert every == [t for h in registry.handlers if h.KIND == "notice"
                     for t in registry.topics(h.NAME)]
    assert "lsst-alerts-v11" not in every and "igwn.gwalert" in every
    assert topics('[kafka]\nnotice_topics = ["lvk:my.topic"]\n', "notice") == ["my.topic"]
    mixed = topics('[kafka]\nnotice_topics = ["*", "lvk:my.topic"]\n', "notice")
    assert "my.topic" in mixed and "igwn.gwalert" not in mixed  # lvk's topic replaced
    assert len(mixed) == len(set(mixed))


def test_gcn_domain_reaches_gcn_kafka(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumer is built by the real gcn-kafka with the configured domain."""
    import gcn_kafka

    seen: dict[str, Any] = {}
    real = gcn_kafka.Consumer

    def spy(config: dict[str, Any], **kwargs: Any) -> Any:
        seen.update(kwargs, servers=config.get("bootstrap.servers"))
        consumer = real(config, **kwargs)
        seen["servers"] = dict(config).get("bootstrap.servers")
        return consumer

    monkeypatch.setattr(gcn_kafka, "Consumer", spy)
    text = '[kafka]\nnotice_topics = ["*"]\ngcn_domain = "test.gcn.nasa.gov"\n'
    config = load_config(_write(tmp_path, text), environ=SECRETS)
    consumer = sources.make_consumer(config, "notice", instance="t")
    try:
        assert seen["domain"] == "test.gcn.nasa.gov" and seen["client_id"] == "id"
    finally:
        consumer.close()


def test_alert_topics_without_a_broker_make_no_consumer(tmp_path: Path) -> None:
    data: dict[str, Any] = json.loads(json.dumps(load_config(environ={}, system=False).data))
    data["kafka"]["alert_topics"] = ["ztf:x"]  # a Config built by hand skips the checks
    config = Config(data=data, environ={})
    with pytest.raises(ConfigError, match=r"needs kafka\.alert_bootstrap_servers"):
        sources.make_consumer(config, "alert", instance="t")


@pytest.mark.daemon
@pytest.mark.slow
def test_spool_only_daemon_runs_without_credentials_or_kafka(tmp_path: Path) -> None:
    """No topic: no consumer, no connection attempt (no librdkafka line), no secret."""
    spool = tmp_path / "spool"
    text = (f'[paths]\nstate_dir = "{tmp_path}"\ncache_dir = "{tmp_path}"\n'
            f'[daemon]\nspool_dir = "{spool}"\nspool_interval_seconds = 0.2\n'
            '[skymaps]\nfetch = false\n[logging]\nlevel = "INFO"\n')
    path = _write(tmp_path, text)
    spool.mkdir()
    for name in ("S261120ab-preliminary.json", "S261120ab-update.json"):
        (spool / name).write_bytes((SAMPLE / name).read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMA_")}
    run = subprocess.run([MMA, "--config", str(path), "run", "--idle-exit", "2"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in (spool / "done").iterdir()) == [
        "S261120ab-preliminary.json", "S261120ab-update.json"]
    assert "running: 0 consumers" in run.stderr
    for noise in ("rdkafka", "9092", "subscribed", "GCN"):
        assert noise not in run.stderr, run.stderr[-2000:]


def test_the_check_says_what_will_be_consumed(tmp_path: Path) -> None:
    from mma.service.preflight import describe_sources

    text = ('[kafka]\nnotice_topics = ["*", "lvk:my.topic"]\ngcn_domain = "test.gcn.nasa.gov"\n'
            'alert_topics = ["ztf:a", "fink:b"]\nalert_bootstrap_servers = "b.example.org:9092"\n')
    assert describe_sources(load_config(_write(tmp_path, text), environ={})) == (
        "notices: every handler's default topics and 1 topics from GCN Kafka "
        "(test.gcn.nasa.gov); alerts: 2 topics from b.example.org:9092")
    assert describe_sources(load_config(_write(tmp_path, ""), environ={})) == "none"


def test_a_copy_of_the_packaged_defaults_loads(tmp_path: Path) -> None:
    """default.toml as a configuration file: the same configuration (its [secrets] table
    names the fixed variables); another name for a secret is still refused."""
    packaged = (Path(mma.config.__file__).parent / "default.toml").read_text()
    copy = load_config(_write(tmp_path, packaged), environ={})
    assert copy.data == load_config(environ={}, system=False).data
    changed = packaged.replace('smtp_password = "MMA_SMTP_PASSWORD"', 'smtp_password = "PW"')
    with pytest.raises(ConfigError, match=r"\[secrets\] names environment variables"):
        load_config(_write(tmp_path, changed), environ={})


def test_configuration_errors_are_printed_one_per_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, shown = _check(_write(tmp_path, BAD_VALUES), capsys)
    assert code == 2
    lines = [line for line in shown.splitlines() if line.strip()]
    assert lines[0].startswith("mma: configuration error: ")
    assert len(lines) == len(BAD_VALUE_MESSAGES) and "\\n" not in shown


def test_system_file_is_read_beneath_config_only_when_asked(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write(tmp_path, '[replay]\nprogress_min_items = 7\n', name="etc-mma.toml")
    user = _write(tmp_path, '[replay]\nmax_clock_gap_days = 9.0\n')
    assert main(["--config", str(user), "config", "show"]) == 0
    alone = capsys.readouterr().out
    assert "max_clock_gap_days = 9.0" in alone and "progress_min_items = 7" not in alone
    assert main(["--config", str(user), "--system-config", "config", "show"]) == 0
    both = capsys.readouterr().out
    assert "max_clock_gap_days = 9.0" in both and "progress_min_items = 7" in both


def test_config_init_works_while_no_configuration_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A broken system file and $MMA_CONFIG naming the file about to be written do not
    keep ``mma config init`` from writing it; the others then read it."""
    _write(tmp_path, "[no_such_section]\n", name="etc-mma.toml")
    target = tmp_path / "new.toml"
    monkeypatch.setenv("MMA_CONFIG", str(target))
    assert main(["config", "init", "-o", str(target)]) == 0
    assert target.is_file()
    capsys.readouterr()
    assert main(["--config", str(target), "config", "check", "--no-secrets"]) == 0, \
        capsys.readouterr().err


def test_a_slack_destination_naming_a_url_is_refused_without_showing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``webhook_secret`` names a variable; a URL there is a leaked secret, not printed."""
    url = "https://hooks.slack.com/services/T000/B000/secretpart"
    code, shown = _check(_write(tmp_path, f"""
[daemon]
spool_dir = "{tmp_path}"
[channels.slack]
enabled = true
[[channels.slack.destinations]]
name = "gw"
webhook_secret = "{url}"
"""), capsys)
    assert code == 2
    assert "webhook_secret" in shown and "secretpart" not in shown
