"""Score of an optical alert inside a multi-messenger region (README, "The score").

Pure functions, no I/O. The ranking statistic is a log Bayes factor between
"the alert is the counterpart" and "the alert is an unrelated transient",
with every component exposed:

``ln B = ln B_sky + ln B_t + ln B_D + ln prior``

* ``B_sky = rho(x) * Omega_bg``: the region's probability density at the
  alert position [sr^-1] times the background solid angle (4 pi sr: unrelated
  transients are taken as uniform on the sky).
* ``B_t = p_sig(dt) * T``: the signal's time-offset density over a background
  uniform in the window of length ``T`` [days]; the default ``p_sig`` is
  uniform over the window, so ``ln B_t = 0``.
* ``B_D = p(D | x) / p_bg(D)``: conditional GW distance density at the
  alert's tile (ligo.skymap's ansatz) over a background uniform in volume out
  to the map's range; 1 (``ln B_D = 0``) without a host distance or without
  distance layers.
* ``prior``: 1 until per-class priors are configured.

The chance-coincidence probability is Poisson:
``P_chance = 1 - exp(-N_bg)``, ``N_bg = R_bg * T_eff * F(>= rho)``, with
``R_bg`` the measured rate of vetted sources over the whole sky [day^-1],
``T_eff`` the part of the window the stream has covered [days] and
``F(>= rho)`` the fraction of background sources expected in the part of the
region at least as dense as the alert's tile (the searched area of
ligo.skymap's crossmatch), weighted by where the survey observes (see
:mod:`mma.match.rates`). For a survey observing the whole sky uniformly,
``F = A(>= rho) / 4 pi`` and this is the familiar ``R_bg [sr^-1 day^-1] * A * T``.
Under the null hypothesis (sources unrelated to the event) the P_chance of
the best match in a region is uniform: that is tested on scrambled skies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FOUR_PI_SR = 4.0 * math.pi
DEG2_PER_SR = (180.0 / math.pi) ** 2


@dataclass(frozen=True)
class Score:
    """Every number that goes into a coincidence's ranking."""

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
    background_rate_per_day: float
    background_fraction: float
    covered_days: float
    window_days: float

    @property
    def log_bayes_factor(self) -> float:
        """The ranking statistic ln B (natural log)."""
        return self.ln_b_sky + self.ln_b_t + self.ln_b_d + self.ln_prior

    def components(self) -> dict[str, float]:
        """Components of ln B and of P_chance, for the output's ``components``."""
        return {
            "ln_B_sky": self.ln_b_sky,
            "ln_B_t": self.ln_b_t,
            "ln_B_D": self.ln_b_d,
            "ln_prior": self.ln_prior,
            "n_background": self.n_background,
            "background_rate_per_day": self.background_rate_per_day,
            "background_fraction": self.background_fraction,
            "covered_days": self.covered_days,
            "window_days": self.window_days,
        }


def ln_b_sky(prob_density_sr: float, background_sr: float = FOUR_PI_SR) -> float:
    """Spatial log Bayes factor ``ln(rho * Omega_bg)``; ``-inf`` where rho is 0."""
    if prob_density_sr <= 0.0:
        return -math.inf
    return math.log(prob_density_sr * background_sr)


def ln_b_time_uniform(dt_days: float, window: tuple[float, float]) -> float:
    """Temporal log Bayes factor for a signal uniform over *window* [days]: 0 inside."""
    start, end = window
    return 0.0 if start <= dt_days <= end else -math.inf


def ln_b_distance(p_signal_per_mpc: float, distance_mpc: float, max_distance_mpc: float) -> float:
    """Distance log Bayes factor against a background uniform in volume.

    Parameters
    ----------
    p_signal_per_mpc
        Conditional distance density of the GW map at the alert's tile [Mpc^-1].
    distance_mpc
        Host distance [Mpc].
    max_distance_mpc
        Range of the background (e.g. the map's mean distance plus several sigma) [Mpc];
        extended to *distance_mpc* if the host lies beyond it, so the background
        density ``3 D^2 / D_max^3`` is never zero where a host is.
    """
    if distance_mpc <= 0.0 or p_signal_per_mpc <= 0.0:
        return -math.inf
    d_max = max(max_distance_mpc, distance_mpc)
    p_background = 3.0 * distance_mpc**2 / d_max**3
    return math.log(p_signal_per_mpc / p_background)


def chance_probability(rate_per_day: float, background_fraction: float,
                       covered_days: float) -> tuple[float, float]:
    """Poisson chance-coincidence probability and expected background count.

    Parameters
    ----------
    rate_per_day
        Vetted unrelated sources per day over the whole sky [day^-1].
    background_fraction
        Fraction of them expected in the searched part of the region (0..1).
    covered_days
        Time of the window the stream has covered [days].

    Returns
    -------
    (p_chance, n_background)
        ``1 - exp(-N)`` and ``N = rate * fraction * days`` (dimensionless).
    """
    n_background = (max(rate_per_day, 0.0) * min(max(background_fraction, 0.0), 1.0)
                    * max(covered_days, 0.0))
    return -math.expm1(-n_background), n_background


def score_match(*, prob_density_sr: float, credible_level: float, searched_area_deg2: float,
                dt_days: float, window: tuple[float, float], rate_per_day: float,
                background_fraction: float, covered_days: float, ln_b_d: float = 0.0,
                ln_prior: float = 0.0) -> Score:
    """Score one alert in one region (see the module docstring for the formulas)."""
    p_chance, n_bg = chance_probability(rate_per_day, background_fraction, covered_days)
    return Score(
        prob_density_sr=prob_density_sr, credible_level=credible_level,
        searched_area_deg2=searched_area_deg2, dt_days=dt_days,
        ln_b_sky=ln_b_sky(prob_density_sr), ln_b_t=ln_b_time_uniform(dt_days, window),
        ln_b_d=ln_b_d, ln_prior=ln_prior, p_chance=p_chance, n_background=n_bg,
        background_rate_per_day=rate_per_day, background_fraction=background_fraction,
        covered_days=covered_days, window_days=window[1] - window[0],
    )


def vet_ztf(quality: Mapping[str, Any], rules: Mapping[str, Any]) -> list[str]:
    """Reasons a ZTF alert fails vetting (README, "The score"); empty when it passes.

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
    """Reasons a Rubin/LSST alert fails vetting (README, "The score"); empty when it passes.

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
