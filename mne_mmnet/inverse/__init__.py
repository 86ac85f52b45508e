"""MNE-facing inverse functions."""

from ._api import (
    KNOWN_MODELS,
    apply_mmnet_inverse,
    apply_mmnet_inverse_epochs,
    expand_to_vertices,
)
from ._operator import MMNetInverse, make_mmnet_inverse
from ._prepare import MIN_CHANNELS

__all__ = [
    "KNOWN_MODELS",
    "MIN_CHANNELS",
    "MMNetInverse",
    "apply_mmnet_inverse",
    "apply_mmnet_inverse_epochs",
    "expand_to_vertices",
    "make_mmnet_inverse",
]
