"""The score of a candidate: pure functions, no I/O (docs/statistic.md).

The ranking statistic is a log Bayes factor between "the object is the
event's counterpart" and "the object is an unrelated source of the survey",
with every component exposed:

``ln B = ln B_sky + ln B_t + ln B_D + ln prior``

* ``B_sky = rho(x) / b(x)``: the region's probability density at the object
  [sr^-1] over the survey's own background density there, normalised over the
  sky (``b = lambda(x) / Lambda``, :mod:`mma.match.background`); for a survey
  observing the whole sky evenly this is the familiar ``rho * 4 pi``, and a ZTF
  and a Rubin candidate of one event compare on one scale.
* ``B_t``: the class's signal time model over a background uniform in the
  window (:mod:`mma.match.priors`).
* ``B_D``: the GW distance term (:mod:`mma.match.distance`).
* ``prior``: the event's probability of being astrophysical, and a strong
  penalty for an object seen before a merger or burst (``pre_existing``).

The chance-coincidence probability is ``P_chance = 1 - exp(-N_bg)``, with
``N_bg`` the unrelated objects expected over the event's whole window in the
part of the region at least as probable as the object's position, from the
survey's local background (:func:`mma.match.background.local_background`).
The association probability folds the odds ``exp(ln B) / Lambda`` (Lambda: the
objects expected over the whole sky in the window) into ``odds / (1 + odds)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mma.match.finite import LN_FLOOR, clamp_ln
from mma.match.priors import association_probability

FOUR_PI_SR = 4.0 * math.pi
DEG2_PER_SR = (180.0 / math.pi) ** 2


@dataclass(frozen=True)
class Score:
    """Every number that goes into a candidate's ranking.

    Densities are per steradian, times in days, ``ln`` natural.
    """

    prob_density_sr: float
    credible_level: float
    searched_area_deg2: float
    dt_days: float
    ln_b_sky: float
    ln_b_t: float
    ln_b_d: float
    ln_prior: float
    p_chance: float
    n_background: float
    n_background_err: float
    background_density_sr: float
    background_sky_total: float
    background_unmeasured: bool
    window_days: float
    p_astro: float = 1.0

    @property
    def log_bayes_factor(self) -> float:
        """The ranking statistic ln B (natural log)."""
        return self.ln_b_sky + self.ln_b_t + self.ln_b_d + self.ln_prior

    @property
    def p_association(self) -> float:
        """Probability that the object is the event's counterpart (module docstring)."""
        return association_probability(self.log_bayes_factor, self.background_sky_total)

    def components(self) -> dict[str, float]:
        """Components of ln B and of P_chance, for the output's ``components``."""
        return {
            "ln_B_sky": self.ln_b_sky,
            "ln_B_t": self.ln_b_t,
            "ln_B_D": self.ln_b_d,
            "ln_prior": self.ln_prior,
            "p_astro": self.p_astro,
            "n_background": self.n_background,
            "n_background_err": self.n_background_err,
            "background_density_sr": self.background_density_sr,
            "background_sky_total": self.background_sky_total,
            "window_days": self.window_days,
        }


def ln_b_sky(prob_density_sr: float, background_density_sr: float,
             background_sky_total: float) -> float:
    """Spatial log Bayes factor ``ln(rho / b)``, ``b = density / sky total`` [sr^-1].

    Parameters
    ----------
    prob_density_sr : float
        The region's probability density at the object [sr^-1].
    background_density_sr : float
        Unrelated objects expected per steradian there.
    background_sky_total : float
        Unrelated objects expected over the whole sky.

    Returns
    -------
    float
        In ``[LN_FLOOR, LN_CEILING]`` (:mod:`mma.match.finite`).

    Notes
    -----
    Computed as a sum of logs, so no product overflows. A density rho of 0 (or
    not finite) gives the floor, :data:`~mma.match.finite.LN_FLOOR`: the map
    excludes the position as strongly as a double can say (a candidate lies
    inside the credible-level cut, so rho > 0 there). A background density of
    0 (nothing expected there) is taken as the sky's mean, ``rho * 4 pi``:
    never +inf.
    """
    if not (math.isfinite(prob_density_sr) and prob_density_sr > 0.0):
        return LN_FLOOR
    if not (background_sky_total > 0.0 and background_density_sr > 0.0
            and math.isfinite(background_sky_total) and math.isfinite(background_density_sr)):
        return clamp_ln(math.log(prob_density_sr) + math.log(FOUR_PI_SR))
    return clamp_ln(math.log(prob_density_sr) + math.log(background_sky_total)
                    - math.log(background_density_sr))


def ln_b_time_uniform(dt_days: float, window: tuple[float, float]) -> float:
    """Temporal log Bayes factor for a signal uniform over *window* [days].

    0 inside, :data:`~mma.match.finite.LN_FLOOR` outside (not -inf: a detection
    outside the window is excluded as strongly as a double can say).
    """
    start, end = window
    return 0.0 if start <= dt_days <= end else LN_FLOOR


def chance_probability(n_background: float) -> float:
    """Poisson probability of at least one unrelated object when *n_background* expected.

    In [0, 1]: 0 for a count at or below 0, 1 for +inf. NaN stays NaN (a bug
    the record's check names, :func:`mma.match.finite.check_record`).
    """
    if math.isnan(n_background):
        return n_background
    return -math.expm1(-max(n_background, 0.0))


def score_match(*, prob_density_sr: float, credible_level: float, searched_area_deg2: float,
                dt_days: float, window: tuple[float, float], n_background: float,
                n_background_err: float, background_density_sr: float,
                background_sky_total: float, background_unmeasured: bool,
                ln_b_t: float | None = None, ln_b_d: float = 0.0, ln_prior: float = 0.0,
                p_astro: float = 1.0) -> Score:
    """Score one object in one region (see the module docstring for the formulas).

    Notes
    -----
    Every ln term, given or computed, is clamped to ``[LN_FLOOR, LN_CEILING]``
    (:func:`mma.match.finite.clamp_ln`), so ln B is finite whatever a term's
    own edge cases give.
    """
    return Score(
        prob_density_sr=prob_density_sr, credible_level=credible_level,
        searched_area_deg2=searched_area_deg2, dt_days=dt_days,
        ln_b_sky=ln_b_sky(prob_density_sr, background_density_sr, background_sky_total),
        ln_b_t=ln_b_time_uniform(dt_days, window) if ln_b_t is None else clamp_ln(ln_b_t),
        ln_b_d=clamp_ln(ln_b_d), ln_prior=clamp_ln(ln_prior),
        p_chance=chance_probability(n_background),
        n_background=n_background, n_background_err=n_background_err,
        background_density_sr=background_density_sr,
        background_sky_total=background_sky_total,
        background_unmeasured=background_unmeasured, window_days=window[1] - window[0],
        p_astro=p_astro,
    )


def vet_ztf(quality: Mapping[str, Any], rules: Mapping[str, Any]) -> list[str]:
    """Reasons a ZTF alert fails vetting (docs/science.md, "The score"); empty when it passes.

    Missing fields do not veto: a broker that drops ``drb`` should not lose alerts.
    """
    reasons = []
    rb, drb = quality.get("rb"), quality.get("drb")
    if rb is not None and rb < rules["min_rb"]:
        reasons.append(f"rb={rb:.2f}<{rules['min_rb']}")
    if drb is not None and drb < rules["min_drb"]:
        reasons.append(f"drb={drb:.2f}<{rules['min_drb']}")
    if rules["require_positive_subtraction"] and quality.get("isdiffpos") is False:
        reasons.append("negative_subtraction")
    ssdist, ssmag = quality.get("ssdistnr"), quality.get("ssmagnr")
    if (ssdist is not None and 0.0 <= ssdist <= rules["max_ssdistnr_arcsec"]
            and ssmag is not None and ssmag < rules["max_ssmagnr"]):
        reasons.append("known_solar_system_object")
    sg, dist = quality.get("sgscore1"), quality.get("distpsnr1")
    if (sg is not None and sg > rules["star_sgscore"]
            and dist is not None and 0.0 <= dist < rules["star_distpsnr_arcsec"]):
        reasons.append("ps1_star")
    return reasons


def vet_rubin(quality: Mapping[str, Any], rules: Mapping[str, Any]) -> list[str]:
    """Reasons a Rubin/LSST alert fails vetting (docs/science.md, "The score"); empty if it passes.

    Reads the ``diaSource`` fields the Rubin handler copies into ``quality``:
    ``reliability`` (0–1), ``isNegative``, ``isDipole``, the ``pixelFlags_<name>``
    booleans named in ``rules["pixel_flags"]``, ``ssObjectId`` and
    ``timeWithdrawnMjdTai`` [MJD TAI]. Missing or null fields do not veto (v7
    has no ``isDipole``; ELAsTiCC and brokers carry few of them). A withdrawn
    source gets ``withdrawn``, which also withdraws its earlier matches.
    """
    reasons = []
    reliability = quality.get("reliability")
    if reliability is not None and reliability < rules["min_reliability"]:
        reasons.append(f"reliability={reliability:.2f}<{rules['min_reliability']}")
    if rules["reject_negative"] and quality.get("isNegative") is True:
        reasons.append("negative")
    if rules["reject_dipole"] and quality.get("isDipole") is True:
        reasons.append("dipole")
    flagged = [f for f in rules["pixel_flags"] if quality.get(f"pixelFlags_{f}") is True]
    if flagged:
        reasons.append("pixel_flags:" + ",".join(flagged))
    ss_object = quality.get("ssObjectId")
    if rules["reject_solar_system"] and ss_object:  # 0 and None: no solar-system object
        reasons.append(f"solar_system:{ss_object}")
    if quality.get("timeWithdrawnMjdTai") is not None:
        reasons.append("withdrawn")
    return reasons
