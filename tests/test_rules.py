"""Channel rules: flag exclusions and requirements, p_astro and significance, the quiet
defaults of the human channels, and Slack destinations as channels of their own.

The flag names the defaults drop are checked against what the handlers and the
candidate builder really write for real notices of the corpus.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from mma import channels as channel_rules
from mma.config import Config, load_config
from mma.db.schema import outbox as outbox_table
from mma.errors import ConfigError
from mma.handlers import fermi_gbm, lvk
from mma.ingest import Pipeline
from mma.match.candidate import significance
from mma.models import StoredEvent
from tests.conftest import CORPUS
from tests.test_correlator import MAP_1, alert, feed, notice

HUMAN = ("slack", "email")
DROPPED_BY_DEFAULT = ("low_significance", "pre_existing", "catalogued_star", "catalogued_qso",
                      "not_grb", "not_grb:unreliable_location", "classification_not_grb",
                      "test", "background_unmeasured")


def _defaults() -> Config:
    return load_config(environ={}, system_file=Path("/nonexistent"))


def _record(*flags: str, **extra: Any) -> dict[str, Any]:
    """A clean, significant new candidate (passes every default), with *flags*."""
    return {"kind": "new", "messenger": "gw", "survey": "ZTF", "flags": list(flags),
            "p_chance": 0.01, "log_bayes_factor": 5.0, "credible_level": 0.5,
            "significance": {"far_hz": 1e-9, "p_astro": 0.99, "significant": True,
                             "signalness": None}, **extra}


def _passes(rules: Any, record: dict[str, Any]) -> bool:
    return channel_rules.passes(rules, record, {"properties": {"far": 1e-9}}, 100.0)


def _rules(channel: str = "kafka", **over: Any) -> dict[str, Any]:
    return {**_defaults().section(f"channels.{channel}.rules"), **over}


def test_a_flag_name_matches_its_qualified_forms_only() -> None:
    assert channel_rules.has_flag(["not_grb:unreliable_location"], "not_grb")
    assert channel_rules.has_flag(["not_grb"], "not_grb")
    assert channel_rules.has_flag(["veto:withdrawn"], "veto:")
    assert not channel_rules.has_flag(["not_grb_really"], "not_grb")
    assert not channel_rules.has_flag(["classification_not_grb"], "not_grb")
    assert not channel_rules.has_flag([], "test")


def test_exclude_flags_drops_any_listed_flag_and_its_qualified_forms() -> None:
    rules = _rules(exclude_flags=["not_grb", "pre_existing"])
    assert _passes(rules, _record("early_warning"))
    assert not _passes(rules, _record("not_grb:solar_flare"))
    assert not _passes(rules, _record("early_warning", "pre_existing"))


def test_require_flags_needs_every_one() -> None:
    rules = _rules(require_flags=["external_coinc", "early_warning"])
    assert _passes(rules, _record("external_coinc", "early_warning", "pre_existing"))
    assert not _passes(rules, _record("external_coinc"))
    assert not _passes(rules, _record())


def test_min_p_astro_reads_the_record_and_an_unstated_one_fails() -> None:
    rules = _rules(min_p_astro=0.5)
    assert _passes(rules, _record())
    low = _record()
    low["significance"] = {**low["significance"], "p_astro": 0.2}
    assert not _passes(rules, low)
    unstated = _record()
    unstated["significance"] = {**unstated["significance"], "p_astro": None}
    assert not _passes(rules, unstated)
    assert _passes(_rules(min_p_astro=0.0), unstated)  # 0: no limit
    assert not _passes(rules, _record(significance=None))  # a version-1 record


def test_significant_only_drops_only_events_stated_not_significant() -> None:
    rules = _rules(significant_only=True)
    stated_not = _record()
    stated_not["significance"] = {**stated_not["significance"], "significant": False}
    unstated = _record()
    unstated["significance"] = {**unstated["significance"], "significant": None}
    assert not _passes(rules, stated_not)
    assert _passes(rules, unstated)  # a GRB or a neutrino says nothing of it
    assert not _passes(rules, _record("low_significance", significance=None))  # VOEvent
    assert _passes(rules, _record())
    assert _passes(_rules(significant_only=False), stated_not)


def test_include_test_is_the_older_spelling_of_excluding_test() -> None:
    assert not _passes(_rules(include_test=False, exclude_flags=[]), _record("test"))
    assert _passes(_rules(include_test=True, exclude_flags=["test"]), _record("test"))
    assert _passes(_rules("slack", include_test=True), _record("test"))
    assert not _passes(_rules("slack", include_test=True), _record("test", "pre_existing"))


@pytest.mark.parametrize("channel", HUMAN)
@pytest.mark.parametrize("flag", DROPPED_BY_DEFAULT)
def test_human_channels_drop_each_quiet_case_by_default(channel: str, flag: str) -> None:
    rules = _defaults().section(f"channels.{channel}.rules")
    assert _passes(rules, _record())  # a clean, significant new candidate is told
    assert not _passes(rules, _record(flag))


@pytest.mark.parametrize("flag", [f for f in DROPPED_BY_DEFAULT if f != "test"])
def test_kafka_passes_every_flag_by_default(flag: str) -> None:
    rules = _defaults().section("channels.kafka.rules")
    assert _passes(rules, _record(flag))
    assert not _passes(rules, _record("test"))  # as before: include_test = false


def test_the_default_flag_names_are_those_the_handlers_write() -> None:
    o4 = CORPUS / "gcn-json/igwn-gwalert/O4-2024-01/S240112e-preliminary-1.json"
    assert lvk.parse(o4.read_bytes(), topic="igwn.gwalert").flags == ("low_significance",)
    mock = CORPUS / "gcn-json/igwn-gwalert/MS181101ab-preliminary.json"
    assert lvk.parse(mock.read_bytes(), topic="igwn.gwalert").test
    gbm = CORPUS / ("voevent/gcn-2024-01-fink-mm/"
                    "GBM_Flt_Pos_2024-01-12T100621.62_726746786_47-687.xml")
    flags = fermi_gbm.parse(gbm.read_bytes(), topic="gcn.classic.voevent.FERMI_GBM_FLT_POS").flags
    assert flags == ("not_grb:unreliable_location",)
    excluded = _defaults().section("channels.slack.rules")["exclude_flags"]
    assert channel_rules.has_flag(flags, "not_grb") and "not_grb" in excluded
    assert "low_significance" in excluded


def test_p_astro_is_one_minus_the_lvk_terrestrial_probability() -> None:
    raw = (CORPUS / "gcn-json/igwn-gwalert/S230518h-initial.json").read_bytes()
    parsed = lvk.parse(raw, topic="igwn.gwalert")
    event = StoredEvent(1, "S230518h", "gw", "gw.cbc", "LVK", datetime(2023, 5, 18, tzinfo=UTC),
                        "active", False, (), parsed.properties, ())
    terrestrial = parsed.properties["classification"]["Terrestrial"]
    assert significance(event)["p_astro"] == pytest.approx(1.0 - terrestrial)
    hostile = StoredEvent(1, "S1", "gw", "gw.cbc", "LVK", datetime(2023, 5, 18, tzinfo=UTC),
                          "active", False, (), {"classification": {"Terrestrial": "x"}}, ())
    assert significance(hostile)["p_astro"] is None


def _config_file(tmp_path: Path, text: str, **environ: str) -> Config:
    path = tmp_path / "mma.toml"
    path.write_text(text)
    return load_config(path, environ={"MMA_PATHS__STATE_DIR": str(tmp_path), **environ},
                       system_file=tmp_path / "none")


DESTINATIONS = """
[channels.slack]
enabled = true
[[channels.slack.destinations]]
name = "gw-oncall"
webhook_secret = "MMA_SLACK_GW_URL"
messengers = ["gw"]
exclude_flags = []
[[channels.slack.destinations]]
name = "grb"
webhook_secret = "MMA_SLACK_GRB_URL"
min_p_astro = 0.5
"""


def test_slack_destinations_are_channels_with_the_slack_rules_underneath(tmp_path: Path) -> None:
    config = _config_file(tmp_path, DESTINATIONS)
    channels = channel_rules.enabled_channels(config)
    assert set(channels) == {"slack:gw-oncall", "slack:grb"}  # no plain webhook secret set
    slack = config.section("channels.slack.rules")
    assert channels["slack:gw-oncall"]["messengers"] == ["gw"]
    assert channels["slack:gw-oncall"]["exclude_flags"] == []
    assert channels["slack:grb"]["exclude_flags"] == slack["exclude_flags"]
    assert channels["slack:grb"]["min_p_astro"] == 0.5
    assert channels["slack:grb"]["max_p_chance"] == slack["max_p_chance"]
    assert "name" not in channels["slack:grb"] and "webhook_secret" not in channels["slack:grb"]
    with_plain = _config_file(tmp_path, DESTINATIONS, MMA_SLACK_WEBHOOK_URL="https://x.invalid")
    assert set(channel_rules.enabled_channels(with_plain)) == {
        "slack", "slack:gw-oncall", "slack:grb"}
    digest = _config_file(tmp_path, DESTINATIONS.replace(
        "enabled = true", "enabled = true\ndigest_minutes = 5"))
    assert channel_rules.digest_minutes(digest, "slack:grb") == 5.0


@pytest.mark.parametrize(("table", "message"), [
    ('webhook_secret = "MMA_A"', "name' is required"),
    ('name = "a"', "webhook_secret' is required"),
    ('name = "a"\nwebhook_secret = "MMA_A"\nshout = true', "unknown key"),
    ('name = "a"\nwebhook_secret = "MMA_A"\nmax_p_chance = "high"', "must be of type"),
])
def test_a_destination_table_is_checked_as_the_config_loads(tmp_path: Path, table: str,
                                                             message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config_file(tmp_path, f"[[channels.slack.destinations]]\n{table}\n")


@pytest.mark.parametrize(("tables", "message"), [
    ('name = "GW On-Call"\nwebhook_secret = "MMA_A"', "1-26 characters"),
    ('name = "a-very-long-destination-name"\nwebhook_secret = "MMA_A"', "1-26 characters"),
    ('name = "a"\nwebhook_secret = "https://hooks.slack.com/services/T/B/x"', "never the URL"),
    ('name = "a"\nwebhook_secret = "MMA_A"\n[[channels.slack.destinations]]\nname = "a"\n'
     'webhook_secret = "MMA_B"', "used twice"),
])
def test_destination_names_are_checked(tmp_path: Path, tables: str, message: str) -> None:
    config = _config_file(tmp_path, "[channels.slack]\nenabled = true\n"
                                    f"[[channels.slack.destinations]]\n{tables}\n")
    with pytest.raises(ConfigError, match=message):
        channel_rules.enabled_channels(config)


def test_a_destination_gets_what_its_own_rules_accept(engine: Engine, tmp_path: Path) -> None:
    config = _config_file(tmp_path, DESTINATIONS.replace('messengers = ["gw"]',
                                                         'messengers = ["gw"]\nmax_p_chance = 1.0'))
    p = Pipeline(engine, config)
    feed(p, notice("PRELIMINARY", 0.01, MAP_1))
    feed(p, alert("a", pixel=0, hours=2))  # flagged background_unmeasured (synthetic survey)
    with engine.connect() as conn:
        channels = [r.channel for r in conn.execute(select(outbox_table.c.channel))]
    assert channels == ["slack:gw-oncall"]  # "grb" keeps the default exclusions
