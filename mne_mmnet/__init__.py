"""MM-Net: learned Majorization-Minimization solvers for EEG source imaging.

The public API, by task:

- head model: :func:`read_template_forward`, :func:`read_template_labels`,
  :func:`read_template_adjacency`, :func:`make_template_forward`,
  :func:`make_fsaverage5_subjects_dir`;
- inverse: :func:`apply_mmnet_inverse`, :func:`apply_mmnet_inverse_epochs`,
  :func:`make_mmnet_inverse` (prepared once, applied many times),
  :func:`solve_mm` (arrays in, arrays out);
- models: :func:`load_model`, :func:`fetch_model`, :func:`save_model`,
  :class:`MMNet`, :func:`train`;
- data and scores: :mod:`mne_mmnet.simulation`, :mod:`mne_mmnet.metrics`,
  :mod:`mne_mmnet.baselines`, :mod:`mne_mmnet.learned_baselines`,
  :mod:`mne_mmnet.bench`;
- figures: :func:`plot_source_estimate` (3-D, needs the ``viz`` extra),
  :mod:`mne_mmnet.viz`.
"""

from ._version import __version__
from .forward import (
    TEMPLATE_CH_NAMES,
    make_fsaverage5_subjects_dir,
    make_template_forward,
    read_template_adjacency,
    read_template_forward,
    read_template_labels,
)
from .inverse import (
    MMNetInverse,
    apply_mmnet_inverse,
    apply_mmnet_inverse_epochs,
    expand_to_vertices,
    make_mmnet_inverse,
)
from .networks import MMNet
from .pretrained import fetch_model, load_model, save_model
from .simulation import load_simulation, simulate_nmm, simulate_sereega
from .solver import solve_mm
from .training import train
from .utils import sys_info
from .viz_3d import plot_source_estimate

__all__ = [
    "MMNet",
    "MMNetInverse",
    "TEMPLATE_CH_NAMES",
    "__version__",
    "apply_mmnet_inverse",
    "apply_mmnet_inverse_epochs",
    "expand_to_vertices",
    "fetch_model",
    "load_model",
    "load_simulation",
    "make_fsaverage5_subjects_dir",
    "make_mmnet_inverse",
    "make_template_forward",
    "plot_source_estimate",
    "read_template_adjacency",
    "read_template_forward",
    "read_template_labels",
    "save_model",
    "simulate_nmm",
    "simulate_sereega",
    "solve_mm",
    "sys_info",
    "train",
]
