"""Projected MM solver of MM-Net: energy, curvature bounds and iterations."""

from .bounds import (
    CurvatureBound,
    HVPBound,
    curvature_bound,
    hvp_curvature_bound,
    leadfield_norm,
)
from .linear import initial_estimate, linear_inverse_kernel
from .mm import mm_iterations
from .objective import Energy, cosine_similarity, energy, normalize_sources
from .solve import solve_mm
from .trace import MMTrace

__all__ = [
    "CurvatureBound",
    "Energy",
    "HVPBound",
    "MMTrace",
    "cosine_similarity",
    "curvature_bound",
    "energy",
    "hvp_curvature_bound",
    "initial_estimate",
    "leadfield_norm",
    "linear_inverse_kernel",
    "mm_iterations",
    "normalize_sources",
    "solve_mm",
]
