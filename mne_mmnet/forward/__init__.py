"""The fsaverage template EEG forward model (90 channels x 994 cortical regions)."""

from .caps import make_cap_forward
from .surfaces import make_fsaverage5_subjects_dir
from .template import (
    TEMPLATE_CH_NAMES,
    make_template_forward,
    read_template_adjacency,
    read_template_forward,
    read_template_labels,
)

__all__ = [
    "TEMPLATE_CH_NAMES",
    "make_cap_forward",
    "make_fsaverage5_subjects_dir",
    "make_template_forward",
    "read_template_adjacency",
    "read_template_forward",
    "read_template_labels",
]
