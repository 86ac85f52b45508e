"""MM-Net: learned Majorization-Minimization solvers for EEG source imaging.

The public API, by task:

- head model: :func:`read_template_forward`, :func:`read_template_labels`,
  :func:`read_template_adjacency`, :func:`make_template_forward`,
  :func:`make_cap_forward` (your own EEG cap), :func:`make_fsaverage5_subjects_dir`;
- inverse: :func:`apply_mmnet_inverse`, :func:`apply_mmnet_inverse_epochs`,
  :func:`make_mmnet_inverse` (prepared once, applied many times),
  :func:`solve_mm` (arrays in, arrays out);
- models: :func:`load_model`, :func:`fetch_model`, :func:`save_model`,
  :class:`MMNet`, :func:`train`;
- data and scores: :mod:`mne_mmnet.simulation`, :mod:`mne_mmnet.metrics`,
  :mod:`mne_mmnet.baselines`, :mod:`mne_mmnet.learned_baselines`,
  :mod:`mne_mmnet.bench`;
- figures: :func:`plot_source_estimate` (3-D, needs the ``viz`` extra),
  :func:`template_subjects_dir` (for MNE's own ``stc.plot()``),
  :mod:`mne_mmnet.viz`.
"""

import lazy_loader as _lazy

from ._version import __version__

# MNE's lazy loading: a submodule (and torch, for the solver, networks and
# models) is imported on first use, so reading the template forward or
# computing metrics does not import torch.
__getattr__, __dir__, _ = _lazy.attach(
    __name__,
    submodules=[
        "architectures", "baselines", "bench", "forward", "inverse",
        "learned_baselines", "metrics", "networks", "pretrained", "problem",
        "simulation",
        "solver", "training", "utils", "viz", "viz_3d",
    ],
    submod_attrs={
        "forward": [
            "TEMPLATE_CH_NAMES", "make_cap_forward",
            "make_fsaverage5_subjects_dir", "make_template_forward",
            "read_template_adjacency", "read_template_forward",
            "read_template_labels",
        ],
        "inverse": [
            "MMNetInverse", "apply_mmnet_inverse", "apply_mmnet_inverse_epochs",
            "expand_to_vertices", "make_mmnet_inverse",
        ],
        "networks": ["MMNet"],
        "pretrained": ["fetch_model", "load_model", "save_model"],
        "simulation": ["load_simulation", "simulate_nmm", "simulate_sereega"],
        "solver": ["solve_mm"],
        "training": ["train"],
        "utils": ["sys_info"],
        "viz_3d": ["plot_source_estimate", "template_subjects_dir"],
    },
)  # fmt: skip

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
    "make_cap_forward",
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
    "template_subjects_dir",
    "train",
]
