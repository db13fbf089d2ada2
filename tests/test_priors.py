"""Priors of the counterpart score (p_astro, time, history, class) and P(association)."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mma.config import Config, load_config
from mma.handlers import (
    einstein_probe,
    fermi_gbm,
    icecube,
    integral,
    lvk,
    lvk_voevent,
    svom,
    swift,
    swift_guano,
)
from mma.match.finite import LN_FLOOR
from mma.match.priors import (
    SECONDS_PER_YEAR,
    association_probability,
    check_priors,
    ln_b_time,
    ln_class_prior,
    ln_prior_history,
    p_astro,
)
from mma.models import EVENT_CLASSES, Notice, StoredEvent, event_class_of

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOUR = 1.0 / 24.0


def event_of(notice: Notice, status: str = "active") -> StoredEvent:
    """A stored event as the database gives it back for a single notice."""
    return StoredEvent(
        pk=1, event_id=notice.event_id, messenger=notice.messenger,
        event_class=event_class_of(notice.messenger, notice.event_class),
        instrument=notice.instrument, event_time=notice.event_time, status=status,
        test=notice.test, aliases=(notice.event_id,), properties=dict(notice.properties),
        flags=notice.flags)


def event(event_class: str, properties: Mapping[str, Any], *, instrument: str = "LVK",
          messenger: str = "gw", flags: tuple[str, ...] = (),
          status: str = "active") -> StoredEvent:
    return StoredEvent(pk=1, event_id="E1", messenger=messenger, event_class=event_class,
                       instrument=instrument, event_time=T0, status=status, test=False,
                       aliases=("E1",), properties=properties, flags=flags)


def with_priors(config: Config, **changes: Any) -> Config:
    """*config* with ``[priors]`` keys changed (dotted keys spelt with ``__`` for dots)."""
    data = copy.deepcopy(dict(config.data))
    data["priors"].update({k.replace("__", "."): v for k, v in changes.items()})
    return Config(data=data, sources=config.sources, environ=config.environ)


def parse(module: Any, path: Path, topic: str = "") -> StoredEvent:
    return event_of(module.parse(path.read_bytes(), topic=topic))


# ------------------------------------------------------------------ ln B_t
def test_time_factor_closed_form_inside_and_outside_the_signal_range(config: Config) -> None:
    # gw.cbc: window [-1, 14] d (T = 15), kilonova [0, 7] d, tail 0.1.
    inside = math.log(0.9 * 15.0 / 7.0 + 0.1)
    assert ln_b_time("gw.cbc", 0.5, (-1.0, 14.0), config) == pytest.approx(inside)
    assert ln_b_time("gw.cbc", 7.0, (-1.0, 14.0), config) == pytest.approx(inside)
    assert ln_b_time("gw.cbc", 10.0, (-1.0, 14.0), config) == pytest.approx(math.log(0.1))
    assert ln_b_time("gw.cbc", -0.5, (-1.0, 14.0), config) == pytest.approx(math.log(0.1))
    assert ln_b_time("gw.cbc", 14.5, (-1.0, 14.0), config) == LN_FLOOR
    assert ln_b_time("gw.cbc", -1.5, (-1.0, 14.0), config) == LN_FLOOR
    # grb: afterglow [0, 3] d in [-1, 10]; neutrino flare [-300, 30] d in [-365, 30].
    assert ln_b_time("grb", 1.0, (-1.0, 10.0), config) == pytest.approx(
        math.log(0.9 * 11.0 / 3.0 + 0.1))
    assert ln_b_time("neutrino.track", -150.0, (-365.0, 30.0), config) == pytest.approx(
        math.log(0.9 * 395.0 / 330.0 + 0.1))
    assert ln_b_time("neutrino.track", -330.0, (-365.0, 30.0), config) == pytest.approx(
        math.log(0.1))


def test_thirteen_hours_before_a_merger_scores_lower_than_after(config: Config) -> None:
    window = config.window_days("gw.cbc")
    before = ln_b_time("gw.cbc", -13 * HOUR, window, config)
    after = ln_b_time("gw.cbc", 13 * HOUR, window, config)
    assert before < 0.0 < after
    assert after - before == pytest.approx(math.log((0.9 * 15.0 / 7.0 + 0.1) / 0.1))


@pytest.mark.parametrize("event_class", EVENT_CLASSES)
def test_signal_mixture_integrates_to_one_over_the_window(config: Config,
                                                          event_class: str) -> None:
    start, end = config.window_days(event_class)
    n = 20_000
    dt = start + (np.arange(n) + 0.5) * (end - start) / n  # midpoints
    b_t = np.exp([ln_b_time(event_class, float(t), (start, end), config) for t in dt])
    # p_sig = B_t / T, so the integral of p_sig over the window is the mean of B_t.
    assert float(np.mean(b_t)) == pytest.approx(1.0, abs=2e-3)


def test_a_signal_range_wider_than_the_window_is_clipped_and_still_normalised(
        config: Config) -> None:
    cfg = with_priors(config, signal_days__grb=[-5.0, 2.0], tail_fraction=0.25)
    window = (-1.0, 10.0)
    # Clipped to [-1, 2]: B = 0.75 * 11 / 3 + 0.25 inside, 0.25 outside.
    assert ln_b_time("grb", -0.5, window, cfg) == pytest.approx(math.log(0.75 * 11 / 3 + 0.25))
    assert ln_b_time("grb", 5.0, window, cfg) == pytest.approx(math.log(0.25))
    mean = 3.0 / 11.0 * (0.75 * 11 / 3 + 0.25) + 8.0 / 11.0 * 0.25
    assert mean == pytest.approx(1.0)


def test_tail_fraction_limits(config: Config) -> None:
    hard = with_priors(config, tail_fraction=0.0)
    assert ln_b_time("gw.cbc", 10.0, (-1.0, 14.0), hard) == LN_FLOOR
    assert ln_b_time("gw.cbc", 1.0, (-1.0, 14.0), hard) == pytest.approx(math.log(15 / 7))
    flat = with_priors(config, tail_fraction=1.0)
    assert ln_b_time("gw.cbc", 10.0, (-1.0, 14.0), flat) == 0.0
    assert ln_b_time("gw.cbc", 1.0, (-1.0, 14.0), flat) == 0.0
    broken = with_priors(config, tail_fraction=float("nan"))  # falls back to 0.1
    assert ln_b_time("gw.cbc", 10.0, (-1.0, 14.0), broken) == pytest.approx(math.log(0.1))


def test_bad_signal_ranges_give_no_time_information(config: Config) -> None:
    outside = with_priors(config, signal_days__grb=[20.0, 30.0])
    reversed_ = with_priors(config, signal_days__grb=[3.0, 0.0])
    short = with_priors(config, signal_days__grb=[1.0])
    for cfg in (outside, reversed_, short):
        assert ln_b_time("grb", 1.0, (-1.0, 10.0), cfg) == 0.0
        assert ln_b_time("grb", 11.0, (-1.0, 10.0), cfg) == LN_FLOOR  # the window still holds
    assert len(check_priors(outside)) == 1 and "does not overlap" in check_priors(outside)[0]
    assert "a < b" in check_priors(reversed_)[0]
    assert check_priors(config) == []


def test_no_time_or_degenerate_window_is_neutral(config: Config) -> None:
    assert ln_b_time("gw.cbc", None, (-1.0, 14.0), config) == 0.0
    assert ln_b_time("gw.cbc", float("nan"), (-1.0, 14.0), config) == 0.0
    assert ln_b_time("gw.cbc", 1.0, (2.0, 2.0), config) == 0.0
    assert ln_b_time("not.a.class", 1.0, (-1.0, 14.0), config) == 0.0


def test_user_file_sets_quoted_dotted_keys(tmp_path: Path) -> None:
    user = tmp_path / "mma.toml"
    user.write_text('[priors]\n"signal_days.grb" = [0, 1]\ntail_fraction = 0.2\n')
    cfg = load_config(user, environ={}, system_file=tmp_path / "absent.toml")
    assert ln_b_time("grb", 0.5, (-1.0, 10.0), cfg) == pytest.approx(math.log(0.8 * 11 + 0.2))


# ------------------------------------------------------------------ p_astro
def test_lvk_p_astro_is_one_minus_p_terrestrial(config: Config, corpus: Path) -> None:
    gw = corpus / "gcn-json/igwn-gwalert"
    value, source = p_astro(parse(lvk, gw / "MS181101ab-preliminary.json", "igwn.gwalert"),
                            config)
    assert (value, source) == (pytest.approx(0.99), "lvk:1-p_terrestrial")
    low, source = p_astro(parse(lvk, gw / "O4-2024-01/S240112w-preliminary-1.json"), config)
    assert source == "lvk:1-p_terrestrial"
    assert low == pytest.approx(1 - 0.9982835628028093)
    # VOEvents of O3 carry the classification too (MassGap included).
    o3 = parse(lvk_voevent, corpus / "voevent/gw/S190425z-1-Initial_GW190425.xml")
    assert p_astro(o3, config) == (pytest.approx(1 - 0.00059743288626), "lvk:1-p_terrestrial")


def test_burst_and_unclassified_lvk_events_use_the_far(config: Config, corpus: Path) -> None:
    gw = corpus / "gcn-json/igwn-gwalert"
    rate_hz = 80.0 / SECONDS_PER_YEAR
    weak = parse(lvk, gw / "O4-2024-01/S240112e-preliminary-1.json")  # Burst, FAR 1.6e-5 Hz
    assert weak.event_class == "gw.burst" and weak.properties["significant"] is False
    value, source = p_astro(weak, config)
    assert source == "lvk:far"
    assert value == pytest.approx(rate_hz / (rate_hz + 1.57826e-05))
    strong, _ = p_astro(parse(lvk, gw / "MSBURST-initial.json"), config)
    assert strong > 0.999 and value < 0.2 * strong
    # GW170817's O2 VOEvent has no classification: its FAR of 3.5e-12 Hz says astrophysical.
    o2 = parse(lvk_voevent, corpus / "voevent/gw/G298048-1-Initial_GW170817.xml")
    assert p_astro(o2, config)[1] == "lvk:far" and p_astro(o2, config)[0] > 0.9999


def test_insignificant_far_1e5_is_far_below_a_significant_event(config: Config) -> None:
    weak, _ = p_astro(event("gw.cbc", {"far": 1e-5, "significant": False}), config)
    strong, _ = p_astro(event("gw.cbc", {"far": 1e-9, "significant": True}), config)
    assert weak < 0.25 and strong > 0.99
    # A higher astrophysical rate raises both, keeping the order.
    busier = with_priors(config, lvk_astro_rate_per_year=800.0)
    assert weak < p_astro(event("gw.cbc", {"far": 1e-5}), busier)[0] < strong


def test_every_insignificant_o4_alert_is_below_every_significant_one(
        config: Config, corpus: Path) -> None:
    values: dict[bool, list[float]] = {True: [], False: []}
    for path in sorted((corpus / "gcn-json/igwn-gwalert").rglob("*.json")):
        stored = parse(lvk, path, "igwn.gwalert")
        if isinstance(stored.properties.get("significant"), bool) \
                and stored.properties["search"] != "MDC":
            values[stored.properties["significant"]].append(p_astro(stored, config)[0])
    assert values[True] and values[False]
    assert max(values[False]) < min(values[True])


def test_neutrino_signalness(config: Config, corpus: Path) -> None:
    amon = corpus / "voevent/icecube-amon"
    track = parse(icecube, amon / "AMON_ICECUBE_BRONZE_2022-08-22.xml")
    assert p_astro(track, config) == (pytest.approx(0.3834), "icecube:signalness")
    cascade = parse(icecube, amon / "finkmm_icecube_voevent_number=825.xml")
    assert cascade.event_class == "neutrino.cascade"
    assert p_astro(cascade, config) == (pytest.approx(0.9001), "icecube:signalness")
    json_track = parse(icecube, corpus / "gcn-json/gcn-schema/icecube/"
                       "single_neutrino_alerts.gold_bronze_track_alerts.example.json")
    assert p_astro(json_track, config) == (pytest.approx(0.34064), "icecube:p_astro")
    silent = event("neutrino.cascade", {}, instrument="IceCube", messenger="neutrino")
    assert p_astro(silent, with_priors(config, **{"default_p_astro__neutrino__cascade": 0.2})) \
        == (pytest.approx(0.2), "default")


def test_fermi_gbm_classifier_and_reliability(config: Config, corpus: Path) -> None:
    gbm = corpus / "voevent/fermi-gbm"
    assert p_astro(parse(fermi_gbm, gbm / "fermi_subthresh_grb_gcn.xml"), config) \
        == (pytest.approx(0.8), "gbm:reliability")
    assert p_astro(parse(fermi_gbm, gbm / "fermi_subthresh_grb_lowconfidence.xml"), config) \
        == (pytest.approx(0.2), "gbm:reliability")
    assert p_astro(parse(fermi_gbm, gbm / "fermi_noise_gcn_2.xml"), config) \
        == (pytest.approx(0.49), "gbm:classifier")  # GRB first at 49 %
    # Solar flare 72 %, GRB second at 11 %.
    flare = corpus / ("voevent/gcn-2024-01-fink-mm/"
                      "GBM_Flt_Pos_2024-01-12T035757.58_726724682_49-265.xml")
    assert p_astro(parse(fermi_gbm, flare), config) == (pytest.approx(0.11), "gbm:classifier")
    # A TGF at 100 %: floored at the veto value, not zero.
    assert p_astro(parse(fermi_gbm, gbm / "fermi_noise_gcn.xml"), config) \
        == (pytest.approx(0.01), "gbm:classifier")
    # Ground positions state no class: the grb default.
    ground = parse(fermi_gbm, gbm / "GRB170817A_GBM_Gnd_Pos_524666471.xml")
    assert p_astro(ground, config) == (pytest.approx(0.9), "default")


def test_gbm_runner_up_that_is_not_grb_bounds_the_grb_share(config: Config) -> None:
    props = {"most_likely_class": "solar_flare", "most_likely_prob_percent": 60.0,
             "sec_most_likely_class": "generic_sgr", "sec_most_likely_prob_percent": 30.0}
    gbm = event("grb", props, instrument="Fermi-GBM", messenger="grb")
    assert p_astro(gbm, config) == (pytest.approx(0.1), "gbm:classifier")
    first_only = event("grb", {"most_likely_class": "tgf", "most_likely_prob_percent": 80},
                       instrument="Fermi-GBM", messenger="grb")
    assert p_astro(first_only, config) == (pytest.approx(0.2), "gbm:classifier")


def test_swift_vetoes_and_other_grb_instruments(config: Config, corpus: Path) -> None:
    lost = parse(swift, corpus / "voevent/swift/finkmm_swift_voevent_number=17834.xml")
    assert "startrack_lost_lock" in lost.flags
    assert p_astro(lost, config) == (pytest.approx(0.01), "swift:star_tracker_lost")
    bat = parse(swift, corpus / "voevent/swift/SWIFT_1125809-092_BAT_GRB_Pos.xml")
    assert p_astro(bat, config) == (pytest.approx(0.9), "default")
    not_grb = event("grb", {}, instrument="Swift-BAT", messenger="grb", flags=("not_grb",))
    assert p_astro(not_grb, config) == (pytest.approx(0.01), "swift:not_grb")
    retracted = event("grb", {}, instrument="Swift-BAT-GUANO", messenger="grb",
                      status="retracted")
    assert p_astro(retracted, config) == (pytest.approx(0.01), "swift:retracted")
    guano = parse(swift_guano, corpus / "gcn-json/gcn-schema/swift/bat/Guano.example.json")
    assert p_astro(guano, config) == (1.0, "swift:classification")
    ibas = parse(integral, corpus / "voevent/gcn-2024-01-fink-mm/Refined_Pos_010472-1-937.xml")
    assert p_astro(ibas, config) == (pytest.approx(0.9), "default")
    eclairs = parse(svom, corpus / "gcn-json/gwcelery-fixtures/kafka_alert_svom_wakeup.json")
    assert p_astro(eclairs, config) == (1.0, "svom:p_astro")


def test_xray_and_unknown_use_the_class_default(config: Config, corpus: Path) -> None:
    ep = parse(einstein_probe, corpus / "gcn-json/other/EP240508a_wxt_alert.json")
    assert ep.event_class == "xray"
    assert p_astro(ep, config) == (pytest.approx(0.5), "default")
    cfg = with_priors(config, default_p_astro__xray=0.3)
    assert p_astro(ep, cfg) == (pytest.approx(0.3), "default")
    odd = event("no.such.class", {}, instrument="", messenger="optical")
    assert p_astro(odd, config) == (0.5, "default")


@pytest.mark.parametrize("bad", ["0.3", float("nan"), -0.2, 1.5, float("inf"), True, None,
                                 [0.1], {"x": 1}])
def test_malformed_probabilities_fall_back_to_the_default(config: Config, bad: Any) -> None:
    cases = [
        event("gw.cbc", {"classification": {"Terrestrial": bad}}),
        event("neutrino.track", {"signalness": bad, "p_astro": bad}, instrument="IceCube",
              messenger="neutrino"),
        event("grb", {"classification": {"GRB": bad}}, instrument="Swift-BAT-GUANO",
              messenger="grb"),
    ]
    defaults = {"gw.cbc": 0.5, "neutrino.track": 0.3, "grb": 0.9}
    for stored in cases:
        assert p_astro(stored, config) == (
            pytest.approx(defaults[stored.event_class]), "default"), stored.properties


@pytest.mark.parametrize("bad", ["1e-5", float("nan"), -1.0, float("inf"), False, None, [1.0]])
def test_malformed_rates_fall_back_to_the_default(config: Config, bad: Any) -> None:
    for stored in (event("gw.cbc", {"classification": {}, "far": bad}),
                   event("gw.burst", {"far": bad}),
                   event("grb", {"reliability": bad}, instrument="Fermi-GBM", messenger="grb"),
                   event("grb", {"most_likely_class": "grb", "most_likely_prob_percent": bad},
                         instrument="Fermi-GBM", messenger="grb")):
        assert p_astro(stored, config) == (
            pytest.approx(0.9 if stored.event_class == "grb" else 0.5), "default")


def test_p_astro_is_clipped_and_bad_defaults_are_replaced(config: Config) -> None:
    certain_noise = event("gw.cbc", {"classification": {"Terrestrial": 1.0}})
    assert p_astro(certain_noise, config) == (1e-6, "lvk:1-p_terrestrial")
    assert p_astro(event("gw.cbc", {"far": 0.0}), config) == (1.0, "lvk:far")
    broken = with_priors(config, default_p_astro__grb=float("nan"), flagged_p_astro=-1.0)
    assert p_astro(event("grb", {}, instrument="AGILE", messenger="grb"), broken)[0] == 0.5
    flagged = event("grb", {}, instrument="AGILE", messenger="grb", flags=("not_grb",))
    assert p_astro(flagged, broken) == (1e-6, "agile:not_grb")


# ------------------------------------------------------------------ history and class priors
def test_pre_existing_objects_are_penalised_except_for_neutrinos(config: Config) -> None:
    for event_class in EVENT_CLASSES:
        assert ln_prior_history(event_class, False, config) == 0.0
    for event_class in ("gw.cbc", "gw.burst", "grb", "xray"):
        assert ln_prior_history(event_class, True, config) == pytest.approx(math.log(1e-3))
    for event_class in EVENT_CLASSES:
        if event_class.startswith("neutrino."):
            assert ln_prior_history(event_class, True, config) == 0.0
    cfg = with_priors(config, pre_existing_factor__grb=0.1, pre_existing_factor__xray=0.0)
    assert ln_prior_history("grb", True, cfg) == pytest.approx(math.log(0.1))
    assert ln_prior_history("xray", True, cfg) == LN_FLOOR
    bad = with_priors(config, pre_existing_factor__grb=2.0)
    assert ln_prior_history("grb", True, bad) == pytest.approx(math.log(1e-3))


def test_has_remnant_prior(config: Config, corpus: Path) -> None:
    gw = corpus / "gcn-json/igwn-gwalert"
    nsbh = parse(lvk, gw / "S230518h-initial.json")  # HasRemnant 0.0
    bns = parse(lvk, gw / "MS181101ab-preliminary.json")  # HasRemnant 0.91
    o2 = parse(lvk_voevent, corpus / "voevent/gw/G298048-1-Initial_GW170817.xml")
    assert ln_class_prior(nsbh, config) == 0.0  # off by default
    on = with_priors(config, use_has_remnant=True)
    assert ln_class_prior(nsbh, on) == pytest.approx(math.log(0.01))
    assert ln_class_prior(bns, on) == pytest.approx(math.log(0.91))
    assert ln_class_prior(o2, on) == 0.0  # ProbHasRemnant 1.0
    assert ln_class_prior(nsbh, with_priors(on, has_remnant_floor=0.1)) == pytest.approx(
        math.log(0.1))
    burst = parse(lvk, gw / "O4-2024-01/S240112e-preliminary-1.json")
    assert ln_class_prior(burst, on) == 0.0
    assert ln_class_prior(event("gw.cbc", {"HasRemnant": 0.5}), on) == pytest.approx(
        math.log(0.5))
    for bad in ("0.5", float("nan"), -1.0):
        assert ln_class_prior(event("gw.cbc", {"properties": {"HasRemnant": bad}}), on) == 0.0


# ------------------------------------------------------------------ association probability
def test_association_probability_closed_forms() -> None:
    assert association_probability(0.0, 1.0) == pytest.approx(0.5)
    assert association_probability(math.log(3.0), 1.0) == pytest.approx(0.75)
    assert association_probability(math.log(2.0), 2.0) == pytest.approx(0.5)
    # p B / (p B + N) with p = 0.3, B = 50, N = 4.
    ln_b = math.log(0.3) + math.log(50.0)
    assert association_probability(ln_b, 4.0) == pytest.approx(15.0 / 19.0)


def test_association_probability_edges_never_overflow_or_nan() -> None:
    assert association_probability(-math.inf, 1.0) == 0.0
    assert association_probability(float("nan"), 1.0) == 0.0
    assert association_probability(1e4, 1.0) == 1.0
    assert association_probability(math.inf, 1.0) == 1.0
    assert association_probability(-1e4, 1.0) == 0.0
    assert association_probability(0.0, math.inf) == 0.0
    assert association_probability(0.0, float("nan")) == 0.0
    for n in (0.0, -3.0):
        assert association_probability(-100.0, n) == pytest.approx(1.0)
    assert association_probability(-800.0, 0.0) < 1e-40


def test_association_probability_is_monotonic() -> None:
    # Strictly where P is resolvable in double precision, never decreasing anywhere.
    strict = [association_probability(float(x), 10.0) for x in np.linspace(-30, 30, 601)]
    assert all(b > a for a, b in itertools.pairwise(strict))
    wide = [association_probability(float(x), 10.0) for x in np.linspace(-900, 900, 1801)]
    assert all(b >= a for a, b in itertools.pairwise(wide))
    by_n = [association_probability(2.0, float(n)) for n in np.logspace(-5, 5, 101)]
    assert all(b < a for a, b in itertools.pairwise(by_n))
    assert all(0.0 <= p <= 1.0 for p in strict + wide + by_n)
