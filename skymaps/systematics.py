"""Systematic-error models added to a notice's statistical error circle.

Fermi GBM positions carry a statistical radius only; their systematic error was
measured by Connaughton et al. 2015 (ApJS 216, 32, doi:10.1088/0067-0049/216/2/32)
as a core + tail mixture. This module follows LVK RAVEN as implemented in
gwcelery (``tasks/external_skymaps.py``: ``_fisher``, ``fermi_error_model``,
``create_external_skymap``) exactly:

* each component ``i`` is a Fisher density whose width is the statistical radius
  and the component's systematic radius added in quadrature,
  ``sigma_i^2 = r_stat^2 + r_sys,i^2``, with concentration
  ``kappa_i = 1 / (0.66 sigma_i)^2`` [rad^-2] (Connaughton et al. eqs. 1-2: the
  radii are 68 % containment radii, and ``0.66 ~ 1 / sqrt(-2 ln 0.32)`` turns a
  68 % radius into the Gaussian width);
* the components are weighted ``w_core`` and ``1 - w_core``;
* the statistical radius is floored at :data:`MIN_STAT_RADIUS_DEG` (0.08 deg).

=========================  ===========  ==========  ==========  ======================
model                      core weight  core [deg]  tail [deg]  source (Connaughton)
=========================  ===========  ==========  ==========  ======================
``fermi_gbm_flt`` FLT_POS  0.897        7.52        55.6        Table 7, first row
``fermi_gbm_gnd`` GND_POS  0.804        3.72        13.7        Table 3, first row
``fermi_gbm_fin`` FIN_POS  0.900        3.71        14.3        Table 3, second row
=========================  ===========  ==========  ==========  ======================

The statistical radius is GBM's "1 sigma" radius as the notices give it
(``Error2Radius``, GCN JSON ``ra_dec_error`` with containment 0.68); it is used
as is, as RAVEN does. A radius stated at another containment is first rescaled
to the 68 % radius of a 2-D Gaussian (see :func:`stat_radius_68`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from astropy.table import Table

from mma.errors import InvalidValue
from mma.skymaps.region import MAX_ORDER
from mma.skymaps.shapes import fisher_mixture_map

__all__ = ("MIN_STAT_RADIUS_DEG", "MODELS", "SystematicModel", "component_kappas",
           "stat_radius_68", "systematic_map")

log = logging.getLogger(__name__)

MIN_STAT_RADIUS_DEG = 0.08
"""Floor of the statistical radius [deg] (RAVEN's; avoids degenerate maps)."""

_SIGMA_PER_R68 = 0.66
"""Gaussian width per 68 % radius, as in Connaughton et al. 2015 and RAVEN."""

_P68 = 0.68
# Containments that notices use for a "1 sigma" GBM radius: GCN JSON 0.68, the 1-D
# 68.27 %, and the 2-D 1-sigma 39.35 % that some handlers state for Error2Radius.
_ONE_SIGMA = (0.68, 0.6827, 0.3935)


@dataclass(frozen=True)
class SystematicModel:
    """A core + tail systematic model.

    Attributes
    ----------
    name : str
        The ``RegionSpec.systematic`` value.
    core_weight : float
        Weight of the core component; the tail has ``1 - core_weight``.
    core_deg, tail_deg : float
        Systematic 68 % radii [deg] of the core and tail components.
    """

    name: str
    core_weight: float
    core_deg: float
    tail_deg: float

    @property
    def weights(self) -> tuple[float, float]:
        """(core, tail) weights, summing to 1."""
        return self.core_weight, 1.0 - self.core_weight


MODELS: dict[str, SystematicModel] = {
    model.name: model for model in (
        SystematicModel("fermi_gbm_flt", 0.897, 7.52, 55.6),
        SystematicModel("fermi_gbm_gnd", 0.804, 3.72, 13.7),
        SystematicModel("fermi_gbm_fin", 0.900, 3.71, 14.3),
    )
}
"""The systematic models by ``RegionSpec.systematic`` name."""


def stat_radius_68(radius_deg: float, containment: float | None = None) -> float:
    """The statistical radius [deg] the model expects: GBM's 1-sigma (68 %) radius.

    ``containment`` None or a "1 sigma" value (0.68, 0.6827, 0.3935) keeps the
    radius as stated (RAVEN's behaviour); any other containment ``p`` rescales it
    as a 2-D Gaussian radius, by ``sqrt(-2 ln 0.32) / sqrt(-2 ln(1 - p))``. The
    result is floored at :data:`MIN_STAT_RADIUS_DEG`.

    Raises
    ------
    mma.errors.InvalidValue
        Radius not finite or negative, containment outside (0, 1).
    """
    if not (math.isfinite(radius_deg) and radius_deg >= 0.0):
        raise InvalidValue(f"statistical radius {radius_deg!r} deg is not a radius")
    radius = radius_deg
    if containment is not None:
        if not 0.0 < containment < 1.0:
            raise InvalidValue(f"containment {containment!r} outside (0, 1)")
        if not any(abs(containment - p) < 1e-3 for p in _ONE_SIGMA):
            radius *= math.sqrt(-2 * math.log1p(-_P68)) / math.sqrt(-2 * math.log1p(-containment))
            log.info("systematic model: %.4g deg at %.4g containment rescaled to %.4g deg (68 %%)",
                     radius_deg, containment, radius)
    return max(radius, MIN_STAT_RADIUS_DEG)


def component_kappas(model: SystematicModel, stat_radius_deg: float) -> tuple[float, float]:
    """Fisher concentrations [rad^-2] of the (core, tail) components.

    ``kappa_i = 1 / (0.66^2 (r_stat^2 + r_sys,i^2))`` with radii in radians;
    ``stat_radius_deg`` is used as given (see :func:`stat_radius_68` for the floor).
    """
    r_stat2 = math.radians(stat_radius_deg) ** 2

    def kappa(r_sys_deg: float) -> float:
        return 1.0 / (_SIGMA_PER_R68**2 * (r_stat2 + math.radians(r_sys_deg) ** 2))

    return kappa(model.core_deg), kappa(model.tail_deg)


def systematic_map(
    ra_deg: float,
    dec_deg: float,
    stat_radius_deg: float,
    model: str | SystematicModel,
    containment: float | None = None,
    *,
    max_order: int = MAX_ORDER,
    max_tile_prob: float = 5e-5,
) -> Table:
    """Multi-order map of a statistical circle with a core + tail systematic model.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Centre [deg, ICRS].
    stat_radius_deg : float
        Statistical error radius [deg] as the notice states it.
    model : str or SystematicModel
        A :data:`MODELS` name (``fermi_gbm_flt``, ``fermi_gbm_gnd``, ``fermi_gbm_fin``)
        or a model.
    containment : float, optional
        Containment of ``stat_radius_deg``; see :func:`stat_radius_68`.
    max_order, max_tile_prob
        See :func:`mma.skymaps.refine.adaptive_map`.

    Returns
    -------
    astropy.table.Table
        UNIQ (int64) and PROBDENSITY [sr^-1], normalised; ``meta`` has ``systematic``,
        ``stat_radius_deg`` (after rescaling and floor), ``kappas`` [rad^-2] and
        ``weights`` (core, tail).

    Raises
    ------
    mma.errors.InvalidValue
        Unknown model name, bad centre, radius or containment.
    """
    if isinstance(model, str):
        if model not in MODELS:
            raise InvalidValue(f"unknown systematic model {model!r} (known: {sorted(MODELS)})")
        model = MODELS[model]
    radius = stat_radius_68(stat_radius_deg, containment)
    kappas = component_kappas(model, radius)
    table = fisher_mixture_map(ra_deg, dec_deg, kappas, model.weights, max_order=max_order,
                               max_tile_prob=max_tile_prob)
    table.meta.update(systematic=model.name, stat_radius_deg=radius)
    return table
