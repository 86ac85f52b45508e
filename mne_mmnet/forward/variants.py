"""Perturbed head models: leadfields that differ from the template on purpose.

A model trained on data made with the template leadfield alone learns that
leadfield's exact numbers. Real heads differ (skull conductivity, shape,
electrode placement), so training and the generalisation benchmark also draw
data from the variants built here, while the inverse keeps the template.
Each variant is a 90 x 994 region leadfield in the template's channel and
region order, built offline with MNE and cached under ``MNE_DATA`` (these are
build products: never committed).
"""

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
from mne.utils import _validate_type, logger, verbose
from scipy import sparse

from .template import (
    CONDUCTIVITY,
    N_REGIONS,
    N_REGIONS_PER_HEMI,
    TEMPLATE_CH_NAMES,
    _load_regions,
)

#: head-model variants drawn from during training
TRAIN_VARIANTS = (
    dict(skull_conductivity=0.003),
    dict(skull_conductivity=0.0045),
    dict(skull_conductivity=0.01),
    dict(skull_conductivity=0.015),
    dict(jitter_mm=5.0, jitter_seed=1),
    dict(jitter_mm=5.0, jitter_seed=2),
    dict(skull_conductivity=0.008, jitter_mm=4.0, jitter_seed=3),
    dict(sphere=True),
)
#: held-out variants of the generalisation benchmark (never used in training)
TEST_VARIANTS = dict(
    sphere=dict(sphere=True, skull_conductivity=0.0045, jitter_mm=3.0, jitter_seed=99),
    conductivity=dict(skull_conductivity=0.0125, jitter_mm=4.0, jitter_seed=98),
)
_VERSION = 2


def _cache_dir():
    import mne

    root = mne.get_config("MNE_DATA", str(Path("~/mne_data").expanduser()))
    return Path(root).expanduser() / "mne-mmnet" / "head_variants"


def _variant_key(params):
    text = json.dumps(dict(version=_VERSION, **params), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_params(skull_conductivity, jitter_mm, jitter_seed, sphere, ico):
    _validate_type(skull_conductivity, "numeric", "skull_conductivity")
    _validate_type(jitter_mm, "numeric", "jitter_mm")
    _validate_type(sphere, bool, "sphere")
    _validate_type(ico, "int-like", "ico")
    if not 0 < skull_conductivity < 1:
        raise ValueError(
            f"skull_conductivity must lie in (0, 1) S/m, got {skull_conductivity}."
        )
    if not 0 <= jitter_mm <= 20:
        raise ValueError(f"jitter_mm must lie in [0, 20] mm, got {jitter_mm}.")
    if jitter_mm > 0:
        _validate_type(jitter_seed, "int-like", "jitter_seed")
    return dict(
        skull_conductivity=float(skull_conductivity),
        jitter_mm=float(jitter_mm),
        jitter_seed=None if jitter_mm == 0 else int(jitter_seed),
        sphere=bool(sphere),
        ico=int(ico),
    )


def _jittered_info(jitter_mm, jitter_seed):
    """Template channels with each electrode moved tangentially by ~jitter_mm."""
    import mne

    from ._build import _info

    info = _info()
    if jitter_mm == 0:
        return info
    montage = info.get_montage()
    pos = montage.get_positions()
    rng = np.random.default_rng(jitter_seed)
    origin = np.array([0.0, -0.017, 0.04])  # rough head centre (fsaverage head)
    ch_pos = {}
    for name in TEMPLATE_CH_NAMES:
        rr = np.asarray(pos["ch_pos"][name], float)
        radial = rr - origin
        radius = np.linalg.norm(radial)
        radial /= radius
        step = rng.normal(size=3)
        step -= radial * (step @ radial)  # tangential move, same distance
        step *= jitter_mm * 1e-3 / max(np.linalg.norm(step), 1e-12)
        new = rr + step
        ch_pos[name] = origin + (new - origin) * radius / np.linalg.norm(new - origin)
    moved = mne.channels.make_dig_montage(
        ch_pos=ch_pos,
        nasion=pos["nasion"],
        lpa=pos["lpa"],
        rpa=pos["rpa"],
        coord_frame=pos["coord_frame"],
    )
    info.set_montage(moved)
    return info


def _sphere_model(info, src, conductivity):
    """Three shells fitted to the electrodes, the brain shell around the cortex.

    The origin and scalp radius come from a sphere fitted to the electrode
    positions; the inner shell passes 2 mm outside the farthest cortical
    vertex (fsaverage's MRI and head frames coincide with trans="fsaverage"),
    the skull is 5 mm thick.
    """
    import mne

    radius, origin, _ = mne.bem.fit_sphere_to_headshape(
        info, dig_kinds=("eeg",), units="m", verbose=False
    )
    cortex = np.concatenate([s["rr"][s["vertno"]] for s in src])
    inner = np.linalg.norm(cortex - origin, axis=1).max() + 2e-3
    scalp = max(radius, inner + 9e-3)
    return mne.make_sphere_model(
        origin, scalp, relative_radii=(inner / scalp, (inner + 5e-3) / scalp, 1.0),
        sigmas=conductivity, verbose=False,
    )  # fmt: skip


def _build_variant(params):
    import mne

    from ._bem import _make_offline_bem_surfaces, _write_bem_surfaces
    from .surfaces import make_fsaverage5_subjects_dir

    conductivity = (CONDUCTIVITY[0], params["skull_conductivity"], CONDUCTIVITY[2])
    info = _jittered_info(params["jitter_mm"], params["jitter_seed"])
    with tempfile.TemporaryDirectory(prefix="mne_mmnet_variant_") as tmp:
        make_fsaverage5_subjects_dir(tmp, overwrite=True, verbose=False)
        src = mne.setup_source_space(
            "fsaverage", spacing="all", surface="white", subjects_dir=tmp,
            add_dist=False, verbose=False,
        )  # fmt: skip
        if params["sphere"]:
            bem = _sphere_model(info, src, conductivity)
        else:
            surfaces = _make_offline_bem_surfaces()
            _write_bem_surfaces(surfaces, Path(tmp) / "fsaverage" / "bem")
            model = mne.make_bem_model(
                "fsaverage", ico=params["ico"], conductivity=conductivity,
                subjects_dir=tmp, verbose=False,
            )  # fmt: skip
            bem = mne.make_bem_solution(model, verbose=False)
        fwd = mne.make_forward_solution(
            info, trans="fsaverage", src=src, bem=bem, eeg=True, meg=False,
            mindist=0.0, verbose=False,
        )  # fmt: skip
    fwd = mne.convert_forward_solution(
        fwd, surf_ori=True, force_fixed=True, use_cps=True, verbose=False
    )
    regions = _load_regions()
    lh = regions["vertex_region_lh"].astype(np.int64)
    rh = regions["vertex_region_rh"].astype(np.int64) + N_REGIONS_PER_HEMI
    vert_region = np.r_[lh, rh]
    kept = np.r_[fwd["src"][0]["vertno"], fwd["src"][1]["vertno"] + len(lh)]
    summing = sparse.csr_array(
        (np.ones(len(kept)), (np.arange(len(kept)), vert_region[kept])),
        shape=(len(kept), N_REGIONS),
    )
    leadfield = np.asarray(fwd["sol"]["data"] @ summing)
    if fwd["info"]["ch_names"] != list(TEMPLATE_CH_NAMES):
        raise RuntimeError("The variant forward changed the channel order.")
    empty = np.flatnonzero(~np.any(leadfield != 0, axis=0))
    if empty.size:
        raise RuntimeError(
            f"{empty.size} regions lost every vertex in the variant head model "
            f"{params} (sources outside its inner compartment)."
        )
    return leadfield


@verbose
def make_variant_leadfield(
    *,
    skull_conductivity=CONDUCTIVITY[1],
    jitter_mm=0.0,
    jitter_seed=None,
    sphere=False,
    ico=3,
    verbose=None,
):
    """Build (or read from the cache) a perturbed 90 x 994 region leadfield.

    Parameters
    ----------
    skull_conductivity : float
        Skull conductivity in S/m (template: 0.006); brain and scalp keep 0.3.
    jitter_mm : float
        Each electrode is moved along the scalp by this distance, in a random
        tangential direction (0: template positions).
    jitter_seed : int | None
        Seed of the jitter directions (needed when ``jitter_mm > 0``).
    sphere : bool
        Use a three-shell spherical head fitted to the template head instead
        of the template's BEM surfaces.
    ico : int
        Subdivision of the BEM surfaces (3 takes about 10 s to solve).
    %(verbose)s

    Returns
    -------
    leadfield : ndarray, shape (90, 994)
        Region leadfield (sum of the fixed-orientation vertex columns of each
        template region), template channel and region order, not referenced.

    Notes
    -----
    The first call builds the head model with MNE (1 to 3 minutes on two
    cores) and caches the result under ``MNE_DATA/mne-mmnet/head_variants``;
    later calls read the cache.
    """
    params = _check_params(skull_conductivity, jitter_mm, jitter_seed, sphere, ico)
    fname = _cache_dir() / f"variant-{_variant_key(params)}.npz"
    if fname.is_file():
        with np.load(fname) as npz:
            return npz["leadfield"]
    logger.info(f"Building head-model variant {params} (cached in {fname.parent})")
    leadfield = _build_variant(params)
    fname.parent.mkdir(parents=True, exist_ok=True)
    tmp = fname.with_suffix(".tmp.npz")
    np.savez(tmp, leadfield=leadfield, params=json.dumps(params))
    tmp.replace(fname)
    return leadfield
