"""The radial law of an isotropic Gaussian: the noncentral chi density and Bessel ratios, in log space.

If ``v_0 ~ N(mu, kappa^2 I_n)`` with ``|mu| = M``, then ``rho = |v_0|`` has the noncentral chi density
(``|v_0|^2 / kappa^2`` is noncentral chi-square with ``n`` degrees of freedom and noncentrality
``M^2 / kappa^2``; THEORY.md section 9)

    f(rho) = 2 rho^(n-1) / ((2 kappa^2)^(n/2) Gamma(n/2)) exp(-(rho^2 + M^2) / (2 kappa^2)) Phi_nu(rho M / kappa^2),

with ``nu = n/2 - 1`` and ``Phi_nu(z) = Gamma(nu + 1) (2/z)^nu I_nu(z) = 0F1(; nu + 1; z^2 / 4)`` (``Phi_nu(0) = 1``),
so the central case ``M = 0`` needs no limit. Given ``rho``, ``v_0`` has mean ``rho A_nu(rho M / kappa^2) mu / M``
along ``mu`` (von Mises-Fisher), ``A_nu = I_{nu+1} / I_nu``.

``log Phi_nu`` comes from ``scipy.special.ive`` where that does not underflow, from its power series where
``z`` is small against ``nu`` (``nu < 100``), and from Debye's uniform asymptotic expansion (Abramowitz &
Stegun 9.7.7, four correction terms) otherwise; against mpmath the error of ``log Phi`` stays below ``1e-11``
up to ``nu = 5000``. At ``n = 4096`` ``ive`` underflows for most arguments that matter.

The radial integrals that use these pieces (Laplace-placed trapezoid nodes in ``rho``, their centre found by
Newton's method in ``log rho`` with :func:`radial_slopes`) are in :mod:`analytic.reducible_golden`.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = ["log_phi", "bessel_ratio", "log_radial_density", "radial_slopes"]

_DEBYE_MIN_NU = 100.0
_SERIES_TERMS = 40


def _log_phi_debye(nu: float, z: np.ndarray) -> np.ndarray:
    """``log Phi_nu(z)`` by Debye's expansion of ``I_nu(nu t)``, written so that ``log t`` cancels exactly."""
    t = z / nu
    sq = np.sqrt(1 + t * t)
    p = 1 / sq
    p2 = p * p
    u1 = p * (3 - 5 * p2) / 24
    u2 = p2 * (81 - 462 * p2 + 385 * p2**2) / 1152
    u3 = p * p2 * (30375 - 369603 * p2 + 765765 * p2**2 - 425425 * p2**3) / 414720
    u4 = p2**2 * (4465125 - 94121676 * p2 + 349922430 * p2**2 - 446185740 * p2**3 + 185910725 * p2**4) / 39813120
    corr = np.log1p(u1 / nu + u2 / nu**2 + u3 / nu**3 + u4 / nu**4)
    return (nu * (sq - np.log1p(sq) - math.log(nu / 2)) - 0.5 * math.log(2 * math.pi * nu) - 0.5 * np.log(sq)
            + corr + special.gammaln(nu + 1))


def _log_phi_series(nu: float, z: np.ndarray) -> np.ndarray:
    """``log 0F1(; nu + 1; z^2/4)`` by its power series (for ``z`` small against ``nu``)."""
    q = z * z / 4
    term = np.ones_like(z)
    total = np.ones_like(z)
    for j in range(1, _SERIES_TERMS + 1):
        term = term * q / (j * (nu + j))
        total = total + term
    return np.log(total)


def log_phi(nu: float, z) -> np.ndarray:
    """``log Phi_nu(z) = log[Gamma(nu + 1) (2/z)^nu I_nu(z)]`` for ``nu >= -1/2`` and ``z >= 0`` (float64)."""
    z = np.asarray(z, dtype=np.float64)
    if nu >= _DEBYE_MIN_NU:
        return _log_phi_debye(nu, z)
    out = np.zeros_like(z)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        e = special.ive(nu, z)
        ok = (e > 1e-250) & (z > 1e-3)
        out[ok] = np.log(e[ok]) + z[ok] - nu * np.log(z[ok] / 2) + special.gammaln(nu + 1)
    small = ~ok
    if np.any(small):
        out[small] = _log_phi_series(nu, z[small])
    return out


def bessel_ratio(nu: float, z) -> tuple[np.ndarray, np.ndarray]:
    """``A_nu(z) = I_{nu+1}(z) / I_nu(z)`` and ``A_nu(z) / z`` (finite at ``z = 0``: ``1 / (2 (nu + 1))``)."""
    z = np.asarray(z, dtype=np.float64)
    a_over_z = np.exp(log_phi(nu + 1, z) - log_phi(nu, z)) / (2 * (nu + 1))
    return z * a_over_z, a_over_z


def log_radial_density(n: int, rho: np.ndarray, M: np.ndarray, kappa2: np.ndarray) -> np.ndarray:
    """``log f(rho)`` of ``|v_0|``, ``v_0 ~ N(mu, kappa2 I_n)``, ``|mu| = M`` (arrays broadcast), ``rho > 0``."""
    nu = n / 2 - 1
    z = rho * M / kappa2
    return ((n - 1) * np.log(rho) - (n / 2) * np.log(2 * kappa2) + math.log(2) - special.gammaln(n / 2)
            - (rho * rho + M * M) / (2 * kappa2) + log_phi(nu, z))


def radial_slopes(n: int, rho: np.ndarray, M: np.ndarray, kappa2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and second derivatives of ``psi(s) = log f(e^s) + s`` in the log-radius ``s = log rho``:
    ``psi' = n - rho^2/kappa2 + z A(z)`` and ``psi'' = -2 rho^2/kappa2 + z (A + z A')`` with ``z = rho M / kappa2``,
    ``A' = 1 - A^2 - (2 nu + 1) A / z``."""
    nu = n / 2 - 1
    z = rho * M / kappa2
    A, A_over_z = bessel_ratio(nu, z)
    dA = 1 - A * A - (2 * nu + 1) * A_over_z
    y = rho * rho / kappa2
    return n - y + z * A, -2 * y + z * (A + z * dA)
