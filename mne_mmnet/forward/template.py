"""The fsaverage template forward model: 90 EEG channels x 994 cortical regions."""

from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from mne.utils import _validate_type, logger, verbose
from scipy import sparse

from ..utils import _sha256
from ._constants import (  # noqa: F401 (public here)
    CONDUCTIVITY,
    MONTAGE,
    N_REGIONS,
    N_REGIONS_PER_HEMI,
    PARCELLATION_SEED,
    TEMPLATE_CH_NAMES,
)

_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
FORWARD_FNAME = "template-fwd.fif"
REGIONS_FNAME = "template-regions.npz"
REGISTRY_FNAME = "registry.txt"
_HEMIS = ("lh", "rh")


def _read_registry():
    registry = {}
    for line in (_DATA_DIR / REGISTRY_FNAME).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, digest = line.split()[:2]
            registry[name] = digest
    return registry


@cache
def _checked_data_file(name):
    """Path of a shipped data file after checking it against the registry."""
    fname = _DATA_DIR / name
    if not fname.is_file():
        raise FileNotFoundError(
            f"The template file {fname} is missing; reinstall mne-mmnet or run "
            "tools/build_template.py."
        )
    expected = _read_registry().get(name)
    if expected is not None and _sha256(fname) != expected:
        raise RuntimeError(
            f"{fname} does not match its sha256 in {REGISTRY_FNAME}; the package "
            "data are corrupted or were rebuilt without updating the registry "
            "(run tools/build_template.py)."
        )
    return fname


def _read_forward(fname):
    import mne

    fwd = mne.read_forward_solution(fname, verbose=False)
    # FIF stores the leadfield as big-endian float32; hand out native float64
    fwd["sol"]["data"] = np.asarray(fwd["sol"]["data"], dtype=np.float64)
    fwd["_orig_sol"] = np.asarray(fwd["_orig_sol"], dtype=np.float64)
    return fwd


@lru_cache(maxsize=1)
def _load_forward():
    return _read_forward(_checked_data_file(FORWARD_FNAME))


@lru_cache(maxsize=1)
def _load_regions():
    with np.load(_checked_data_file(REGIONS_FNAME)) as npz:
        return {key: npz[key] for key in npz.files}


@verbose
def read_template_forward(*, verbose=None):
    """Read the fsaverage template EEG forward model shipped with mne-mmnet.

    Parameters
    ----------
    %(verbose)s

    Returns
    -------
    fwd : mne.Forward
        Fixed-orientation (surface normal) EEG forward solution with 90
        channels (``mne_mmnet.TEMPLATE_CH_NAMES``) and 994 cortical regions of
        ``fsaverage``; ``fwd["sol"]["data"]`` has shape ``(90, 994)`` and is not
        average-referenced. A new copy is returned on each call.

    See Also
    --------
    read_template_labels, read_template_adjacency, make_template_forward

    Notes
    -----
    Each column is the **sum** of the fixed-orientation leadfields of the
    fsaverage5 white-surface vertices of one region (the convention of DeepSIF
    and of the MM-Net papers). The source space's vertex numbers index the
    fsaverage5 surfaces (10,242 vertices per hemisphere); each region is
    represented by its vertex nearest the region centroid, whose position and
    normal are ``fwd["source_rr"]`` and ``fwd["source_nn"]``. Columns are
    ordered left then right hemisphere, by vertex number, like
    :func:`read_template_labels`. The three-layer BEM uses conductivities
    (0.3, 0.006, 0.3) S/m; see :func:`make_template_forward` for how it is
    built. The leadfield is stored in single precision.
    """
    logger.info(
        f"Reading the fsaverage template forward ({len(TEMPLATE_CH_NAMES)} EEG "
        f"channels x {N_REGIONS} regions)"
    )
    return _load_forward().copy()


@verbose
def read_template_labels(*, verbose=None):
    """Read the 994 cortical regions of the template as labels.

    Parameters
    ----------
    %(verbose)s

    Returns
    -------
    labels : list of mne.Label
        994 labels of subject ``fsaverage`` in forward-column order (497 left
        then 497 right hemisphere), named ``region-lh-000`` ... ``region-rh-496``.
        ``label.vertices`` index the fsaverage5 surfaces and ``label.pos`` holds
        the white-surface positions in metres.

    See Also
    --------
    read_template_forward, read_template_adjacency

    Notes
    -----
    The parcellation is a deterministic (seeded) graph-Voronoi partition of
    each hemisphere's fsaverage5 sphere into 497 contiguous regions of 20.6
    vertices on average (11 to 32), from farthest-point seeds refined by Lloyd
    iterations. It is a reproducible stand-in for the 994-region TVB
    parcellation used by DeepSIF, which is not installable. It covers every
    fsaverage5 vertex,
    including the medial wall: no installable package ships a medial-wall
    mask (FreeSurfer ``?h.cortex.label``) for fsaverage5; nilearn ships meshes,
    curvature, sulcal depth and thickness only. The vertices with zero
    thickness (263 left, 304 right; the core of the medial wall) are the
    majority in 26 regions (11 left, 15 right) and touch 56. These regions are
    kept, so that every vertex belongs to exactly one region; users who want
    cortex only can drop them from the source space themselves.
    """
    import mne

    regions = _load_regions()
    labels = []
    for hemi in _HEMIS:
        region = regions[f"vertex_region_{hemi}"]
        rr = regions[f"white_rr_{hemi}"].astype(np.float64)
        order = np.argsort(region, kind="stable")
        bounds = np.searchsorted(region[order], np.arange(N_REGIONS_PER_HEMI + 1))
        for ri in range(N_REGIONS_PER_HEMI):
            vertices = np.sort(order[bounds[ri] : bounds[ri + 1]])
            labels.append(
                mne.Label(
                    vertices=vertices,
                    pos=rr[vertices],
                    hemi=hemi,
                    name=f"region-{hemi}-{ri:03d}",
                    subject="fsaverage",
                    verbose=False,
                )
            )
    return labels


def read_template_adjacency():
    """Read the region adjacency of the template.

    Returns
    -------
    adjacency : scipy.sparse.csr_array of bool, shape (994, 994)
        Symmetric, with an empty diagonal: two regions are neighbours when a
        mesh edge of the fsaverage5 surface joins one of their vertices. The
        two hemispheres are not connected. Rows and columns follow the forward
        columns and :func:`read_template_labels`.
    """
    regions = _load_regions()
    rows, cols = regions["adjacency_rows"], regions["adjacency_cols"]
    data = np.ones(2 * len(rows), bool)
    adjacency = sparse.coo_array(
        (data, (np.r_[rows, cols], np.r_[cols, rows])), shape=(N_REGIONS, N_REGIONS)
    )
    return sparse.csr_array(adjacency.tocsr(), dtype=bool)


@verbose
def make_template_forward(*, subjects_dir=None, ico=4, verbose=None):
    """Rebuild the fsaverage template forward model.

    Parameters
    ----------
    subjects_dir : path-like | None
        A FreeSurfer subjects folder. If it holds the real ``fsaverage`` with
        ``bem/fsaverage-5120-5120-5120-bem-sol.fif`` (as
        :func:`mne.datasets.fetch_fsaverage` provides), that BEM solution is
        used; otherwise (default) the offline template BEM is built.
    ico : int
        Icosahedral decimation (3, 4 or 5) of the offline BEM surfaces. ico-4
        takes about a minute, ico-3 about ten seconds (column correlation with
        ico-4 above 0.999). Ignored when the real fsaverage BEM is used.
    %(verbose)s

    Returns
    -------
    fwd : mne.Forward
        The forward model, laid out like :func:`read_template_forward`.

    Raises
    ------
    ImportError
        If nilearn (which ships the fsaverage5 meshes) is not installed.

    Notes
    -----
    Offline route (no network): the inner skull and scalp that MNE-Python ships
    for fsaverage; an outer skull synthesised 6 mm (at most half the
    inner-skull-to-scalp gap) outside the inner skull along rays from its
    centroid; the fsaverage5 white surfaces that nilearn ships as the source
    space (every vertex, surface-normal orientation); the ``colin27_1020``
    electrode positions projected on the scalp by
    :func:`mne.make_forward_solution` with ``trans="fsaverage"``; then the
    vertex leadfields are summed per region. The parcellation is seeded
    (seed 0) and therefore identical on every run.
    """
    from ._build import _make_template

    if subjects_dir is not None:
        _validate_type(subjects_dir, "path-like", "subjects_dir")
    _validate_type(ico, "int", "ico")
    if ico not in (3, 4, 5):
        raise ValueError(f"ico must be 3, 4 or 5, got {ico}.")
    return _make_template(subjects_dir=subjects_dir, ico=ico)["forward"]
