"""Sphinx configuration for mne-mmnet."""

import os
import sys
from datetime import date

import mne_mmnet

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("MPLBACKEND", "Agg")

project = "mne-mmnet"
author = "mne-mmnet developers"
copyright = f"{date.today().year}, {author}"  # noqa: A001
release = mne_mmnet.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "sphinxcontrib.bibtex",
]
# one bibliography: docstrings and pages cite with :footcite:
bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"
bibtex_default_style = "plain"

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
autosummary_generate = True
autodoc_default_options = {"inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = True
numpydoc_xref_ignore = {
    "of",
    "shape",
    "optional",
    "default",
    "or",
    "n_samples",
    "n_sources",
    "n_channels",
    "n_times",
    "batch",
    "like",
    "max_seeds",
    "max_patches",
    "n_iter",
    "n_lengths",
    "n_features",
    "n_columns",
    "out_channels",
    "in_channels",
    "kernel_size",
    "to",
}
numpydoc_xref_aliases = {
    "Forward": "mne.Forward",
    "Evoked": "mne.Evoked",
    "Epochs": "mne.Epochs",
    "SourceEstimate": "mne.SourceEstimate",
    "Label": "mne.Label",
    "Tensor": "torch.Tensor",
    "tensor": "torch.Tensor",
    "Dataset": "torch.utils.data.Dataset",
    # short names of mne_mmnet classes used in parameter and return types
    "MMNet": "mne_mmnet.MMNet",
    "LearnedSolver": "mne_mmnet.networks.base.LearnedSolver",
    "SoftReLUAutoencoder": "mne_mmnet.networks.SoftReLUAutoencoder",
    "CurvatureModel": "mne_mmnet.networks.CurvatureModel",
    "StartGate": "mne_mmnet.networks.StartGate",
    "Simulation": "mne_mmnet.simulation.Simulation",
    "MMTrace": "mne_mmnet.solver.MMTrace",
    "Energy": "mne_mmnet.solver.Energy",
    "CurvatureBound": "mne_mmnet.solver.CurvatureBound",
    "HVPBound": "mne_mmnet.solver.HVPBound",
    "TrainResult": "mne_mmnet.training.TrainResult",
    "MetaLoss": "mne_mmnet.training.MetaLoss",
    "MinimumNormSolver": "mne_mmnet.baselines.MinimumNormSolver",
    "ClassicalMMSolver": "mne_mmnet.baselines.ClassicalMMSolver",
}
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "scipy": ("https://docs.scipy.org/doc/scipy", None),
    "mne": ("https://mne.tools/stable", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
    "matplotlib": ("https://matplotlib.org/stable", None),
}
# offline builds: intersphinx fetches fail on machines without internet
if os.environ.get("MNE_MMNET_OFFLINE_DOCS", "1") == "1":
    intersphinx_mapping = {}
    # MNE's shared docstrings (e.g. ``verbose``) point into MNE's and Python's
    # docs; without intersphinx those references cannot resolve offline
    suppress_warnings = ["ref.ref", "ref.term"]
    # Without intersphinx, every cross-reference into another project (Python
    # builtins, which numpydoc's type xref spells ``python:int`` etc., and MNE,
    # NumPy, SciPy, PyTorch, ...) has no target, and the nitpicky build (-n)
    # would fail on each one. Ignore only references whose target lies in
    # one of those projects: references into mne_mmnet itself are still
    # checked. Online builds (MNE_MMNET_OFFLINE_DOCS=0) resolve them through
    # intersphinx and stay strict.
    nitpick_ignore_regex = [
        (r"py:.*", r"python:.*"),
        (r"py:.*", r"(mne|numpy|scipy|torch|sklearn|matplotlib|pathlib|sys)(\..*)?"),
    ]

sphinx_gallery_conf = {
    "examples_dirs": ["../tutorials"],
    "gallery_dirs": ["auto_tutorials"],
    "filename_pattern": r"/\d\d_",
    "within_subsection_order": "FileNameSortKey",
    "backreferences_dir": "generated",
    "doc_module": ("mne_mmnet",),
    "reference_url": {"mne_mmnet": None},
    "abort_on_example_error": True,
    "plot_gallery": "True",
}
nitpicky = False
