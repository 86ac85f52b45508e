"""Private worker that rebuilds the template forward model and parcellation."""

import tempfile
from pathlib import Path

import numpy as np
from mne.utils import logger
from scipy import sparse

from ._bem import _make_offline_bem_surfaces, _write_bem_surfaces
from ._constants import (
    CONDUCTIVITY,
    MONTAGE,
    N_REGIONS,
    N_REGIONS_PER_HEMI,
    PARCELLATION_SEED,
    TEMPLATE_CH_NAMES,
)
from .parcellation import (
    _parcellate_sphere,
    _region_adjacency,
    _representative_vertices,
)
from .surfaces import (
    N_VERTICES_PER_HEMI,
    _read_fsaverage5_mesh,
    make_fsaverage5_subjects_dir,
)

_REAL_BEM = ("fsaverage", "bem", "fsaverage-5120-5120-5120-bem-sol.fif")


def _make_parcellation(seed=PARCELLATION_SEED):
    """Parcellate both hemispheres; regions ordered by representative vertex."""
    out = dict()
    for hi, hemi in enumerate(("lh", "rh")):
        sphere_rr, tris = _read_fsaverage5_mesh("sphere", hemi)
        white_rr, _ = _read_fsaverage5_mesh("white", hemi)
        # distinct but deterministic streams for the two hemispheres
        rng = np.random.default_rng([seed, hi])
        region = _parcellate_sphere(sphere_rr, tris, N_REGIONS_PER_HEMI, seed=rng)
        rep = _representative_vertices(white_rr, region, N_REGIONS_PER_HEMI)
        order = np.argsort(rep)  # mne needs sorted vertno
        relabel = np.empty_like(order)
        relabel[order] = np.arange(N_REGIONS_PER_HEMI)
        out[hemi] = dict(
            region=relabel[region],
            rep=rep[order],
            white_rr=white_rr * 1e-3,
            tris=tris,
        )
    return out


def _info():
    import mne

    info = mne.create_info(list(TEMPLATE_CH_NAMES), 1000.0, "eeg")
    info.set_montage(mne.channels.make_standard_montage(MONTAGE))
    return info


def _bem_solution(subjects_dir, ico, tmp_subjects_dir):
    import mne

    if subjects_dir is not None:
        fname = Path(subjects_dir).expanduser().joinpath(*_REAL_BEM)
        if fname.is_file():
            logger.info(f"Using the real fsaverage BEM solution {fname}")
            return mne.read_bem_solution(fname, verbose=False), "fsaverage"
        logger.info(f"{fname} not found; building the offline template BEM")
    logger.info(f"Building the offline template BEM (ico-{ico})")
    model = _offline_bem_model(ico, tmp_subjects_dir)
    return mne.make_bem_solution(model, verbose=False), "offline"


def _offline_bem_model(ico, tmp_subjects_dir):
    """Write the template head's three BEM surfaces and decimate them."""
    import mne

    surfaces = _make_offline_bem_surfaces()
    _write_bem_surfaces(surfaces, Path(tmp_subjects_dir) / "fsaverage" / "bem")
    return mne.make_bem_model(
        "fsaverage",
        ico=ico,
        conductivity=CONDUCTIVITY,
        subjects_dir=tmp_subjects_dir,
        verbose=False,
    )


def _region_forward(info, subjects_dir, bem, vertex_region, representative):
    """EEG forward on every fsaverage5 white vertex, summed per template region.

    ``vertex_region`` and ``representative`` are the (lh, rh) region of each
    vertex and the (sorted) representative vertex of each region. Returns the
    region forward (one source per region, at its representative vertex, with
    the summed fixed-orientation leadfield) and the vertex-level forward.
    """
    import mne
    from mne.io.constants import FIFF

    src = mne.setup_source_space(
        "fsaverage", spacing="all", surface="white", subjects_dir=subjects_dir,
        add_dist=False, verbose=False,
    )  # fmt: skip
    fwd_full = mne.make_forward_solution(
        info, trans="fsaverage", src=src, bem=bem, eeg=True, meg=False,
        verbose=False,
    )  # fmt: skip
    region = np.r_[vertex_region[0], vertex_region[1] + N_REGIONS_PER_HEMI]
    lh, rh = (s["vertno"] for s in fwd_full["src"])
    kept = np.r_[lh, rh + len(vertex_region[0])]
    if len(kept) != 2 * N_VERTICES_PER_HEMI:
        lost = N_REGIONS - len(np.unique(region[kept]))
        raise RuntimeError(
            f"{2 * N_VERTICES_PER_HEMI - len(kept)} white-surface vertices fell "
            f"outside the inner skull ({lost} template region(s) lost every vertex); "
            "the forward model cannot be built on the template layout."
        )
    fwd_full = mne.convert_forward_solution(
        fwd_full, surf_ori=True, force_fixed=True, use_cps=True, verbose=False
    )
    summing = sparse.csr_array(
        (np.ones(len(region)), (np.arange(len(region)), region)),
        shape=(len(region), N_REGIONS),
    )
    leadfield = np.asarray(fwd_full["sol"]["data"] @ summing)
    # keep only the representative vertices, then put the region sums in
    stc = mne.SourceEstimate(
        np.zeros((N_REGIONS, 1)), vertices=list(representative), tmin=0.0,
        tstep=1.0, subject="fsaverage",
    )  # fmt: skip
    fwd = mne.forward.restrict_forward_to_stc(fwd_full, stc, on_missing="raise")
    fwd["sol"]["data"] = leadfield
    fwd["_orig_sol"] = leadfield.copy()
    fwd["_orig_source_ori"] = FIFF.FIFFV_MNE_FIXED_ORI
    with fwd["info"]._unlock():  # no machine-specific strings in the file
        for key in ("working_dir", "command_line"):
            fwd["info"][key] = ""
    return fwd, fwd_full


def _make_template(*, subjects_dir=None, ico=4, seed=PARCELLATION_SEED):
    """Build forward, parcellation and adjacency; see make_template_forward."""
    parcels = _make_parcellation(seed)
    with tempfile.TemporaryDirectory(prefix="mne_mmnet_template_") as tmp:
        make_fsaverage5_subjects_dir(tmp, overwrite=True, verbose=False)
        bem, route = _bem_solution(subjects_dir, ico, tmp)
        fwd, fwd_full = _region_forward(
            _info(), tmp, bem, [parcels[h]["region"] for h in ("lh", "rh")],
            [parcels[h]["rep"] for h in ("lh", "rh")],
        )  # fmt: skip
    leadfield = fwd["sol"]["data"]
    logger.info(
        f"Template forward built ({route} BEM): {leadfield.shape[0]} channels x "
        f"{leadfield.shape[1]} regions"
    )
    adjacency = _region_adjacency(
        parcels["lh"]["region"],
        parcels["lh"]["tris"],
        parcels["rh"]["region"],
        parcels["rh"]["tris"],
        N_REGIONS_PER_HEMI,
        N_REGIONS_PER_HEMI,
    )
    upper = sparse.triu(adjacency, k=1).tocoo()
    order = np.lexsort((upper.col, upper.row))
    regions = dict(
        vertex_region_lh=parcels["lh"]["region"].astype(np.int32),
        vertex_region_rh=parcels["rh"]["region"].astype(np.int32),
        representative_lh=parcels["lh"]["rep"].astype(np.int32),
        representative_rh=parcels["rh"]["rep"].astype(np.int32),
        white_rr_lh=parcels["lh"]["white_rr"].astype(np.float32),
        white_rr_rh=parcels["rh"]["white_rr"].astype(np.float32),
        adjacency_rows=upper.row[order].astype(np.int32),
        adjacency_cols=upper.col[order].astype(np.int32),
    )
    return dict(forward=fwd, regions=regions, route=route, bem=bem, full=fwd_full)
