"""Forward models for the user's own EEG cap on the template head.

The shipped template forward has the 90 channels of MNE's 10-20 montage. A cap
with other electrodes (BioSemi ``A1`` ... ``B32``, EGI HydroCel ``E1`` ...)
gets its own leadfield here: the same head (offline three-layer BEM), source
space and 994 regions as the template, the user's electrode positions. Build
products are cached under ``MNE_DATA/mne-mmnet/caps`` (never committed).
"""

import hashlib
import json
import os
import tempfile
import time
import uuid
import warnings
from functools import partial
from pathlib import Path

import numpy as np
from mne.utils import _validate_type, logger, verbose

#: bump when the build changes, so that old cache files are not reused
_VERSION = 1
#: BEM decimations accepted (an ico-5 solution matrix takes 7.5 GB)
_ICOS = (3, 4)


def _cache_dir():
    import mne

    root = mne.get_config("MNE_DATA", str(Path("~/mne_data").expanduser()))
    return Path(root).expanduser() / "mne-mmnet" / "caps"


def _cap_info(info):
    """Copy the EEG channels of ``info`` (bads too) into a new Info."""
    import mne
    from mne.io.constants import FIFF

    if not isinstance(info, mne.Info) and hasattr(info, "info"):
        info = info.info  # Evoked, Epochs, Raw
    _validate_type(info, mne.Info, "info", "mne.Info, Evoked, Epochs or Raw")
    picks = mne.pick_types(info, meg=False, eeg=True, exclude=())
    if len(picks) == 0:
        raise ValueError(
            "info has no EEG channels (channel types found: "
            f"{sorted(set(info.get_channel_types()))}); make_cap_forward builds "
            "an EEG forward model: pass the info of EEG data."
        )
    names = [info["ch_names"][p] for p in picks]
    pos = np.array([info["chs"][p]["loc"][:3] for p in picks], np.float64)
    missing = [n for n, r in zip(names, pos) if not (np.isfinite(r).all() and r.any())]
    if missing:
        raise ValueError(
            f"{len(missing)} of the {len(names)} EEG channels have no electrode "
            f"position: {', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''}"
            ". Set the cap's montage first with inst.set_montage(montage), e.g. "
            "montage = mne.channels.make_standard_montage('GSN-HydroCel-128') "
            "(montage.rename_channels gives it your names, e.g. BioSemi's A1..B32 "
            "to 'biosemi64'), or drop the channels without a position "
            "(inst.drop_channels)."
        )
    frames = {int(info["chs"][p]["coord_frame"]) for p in picks}
    radius = np.linalg.norm(pos, axis=1)
    if frames != {FIFF.FIFFV_COORD_HEAD} or not (
        0.03 < radius.min() and radius.max() < 0.3
    ):
        raise ValueError(
            "The EEG positions must be in metres in the head frame (found coordinate "
            f"frame(s) {sorted(frames)}, distances {1e3 * radius.min():.0f}-"
            f"{1e3 * radius.max():.0f} mm from the origin); set them with "
            "inst.set_montage(montage), which converts them."
        )
    new = mne.create_info(names, 1000.0, "eeg")
    for ch, rr in zip(new["chs"], pos):
        ch["loc"][:6] = np.r_[rr, 0.0, 0.0, 0.0]  # no reference electrode
    return new, names, pos


def _cap_key(ico, names, pos):
    """16 hex of the sha256 of the cap: version, ico, names, positions (0.1 mm)."""
    text = json.dumps(
        dict(version=_VERSION, ico=int(ico), ch_names=list(names),
             pos=np.round(pos * 1e4).astype(np.int64).tolist()),
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _atomic_write(fname, write):
    """``write(tmp)`` to a temporary name in the cache folder, then rename."""
    fname.parent.mkdir(parents=True, exist_ok=True)
    tmp = fname.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{fname.name}")
    try:
        write(tmp)
        os.replace(tmp, fname)
    finally:
        tmp.unlink(missing_ok=True)


def _write_forward(fname, fwd):
    import mne

    with warnings.catch_warnings():  # that a fixed orientation is final: it is
        warnings.filterwarnings("ignore", "The forward solution, which is stored")
        mne.write_forward_solution(fname, fwd, overwrite=True, verbose=False)


def _bem(ico, subjects_dir):
    """Solve the template BEM once per ico, then read it (float64)."""
    import mne
    from mne.bem import _add_gamma_multipliers
    from mne.io.constants import FIFF

    from ._build import _offline_bem_model

    model = _offline_bem_model(ico, subjects_dir)
    fname = _cache_dir() / f"bem-ico{ico}-v{_VERSION}-sol.npy"
    n_sol = sum(surf["np"] for surf in model)
    if fname.is_file():
        solution = np.load(fname)
        if solution.shape == (n_sol, n_sol):
            # what mne.make_bem_solution returns, with the cached matrix (FIF
            # files would store it, and the surfaces, in single precision)
            bem = mne.bem.ConductorModel(is_sphere=False, surfs=model)
            _add_gamma_multipliers(bem)
            bem.update(solution=solution, nsol=n_sol, solver="mne",
                       bem_method=FIFF.FIFFV_BEM_APPROX_LINEAR)  # fmt: skip
            logger.info(f"    Using the cached ico-{ico} BEM solution {fname}")
            return bem
        logger.info(f"    {fname} has a wrong shape; solving the BEM again")
    start = time.perf_counter()
    bem = mne.make_bem_solution(model, verbose=False)
    _atomic_write(fname, lambda tmp: np.save(tmp, bem["solution"]))
    logger.info(
        f"    Solved the ico-{ico} BEM in {time.perf_counter() - start:.1f} s "
        f"(cached in {fname})"
    )
    return bem


@verbose
def make_cap_forward(info, *, ico=4, verbose=None):
    """Build the template-head forward model for the electrodes of an EEG cap.

    Parameters
    ----------
    info : mne.Info | mne.Evoked | mne.Epochs | mne.io.Raw
        The recording (or its info), whose EEG channels all carry electrode
        positions (a montage was set). Not modified.
    ico : int
        Icosahedral decimation (3 or 4) of the template's BEM surfaces; the
        shipped template uses 4. ico-3 builds 3 to 6 times faster; on the
        template's channels its columns correlate with ico-4's at 0.9995
        (median; 0.9965 at least).
    %(verbose)s

    Returns
    -------
    fwd : mne.Forward
        Fixed-orientation EEG forward with one row per EEG channel of ``info``
        (bad ones included, in ``info`` order; not referenced) and the source
        layout of :func:`read_template_forward` (994 regions of ``fsaverage``,
        same vertices), for :func:`apply_mmnet_inverse`.

    Raises
    ------
    ValueError
        If ``info`` has no EEG channels, or EEG channels without a position or
        with positions not in metres in the head frame.
    RuntimeError
        If cortical vertices fall outside the inner skull (then regions would
        lose vertices).
    ImportError
        If nilearn (which ships the fsaverage5 meshes) is not installed.

    See Also
    --------
    read_template_forward, make_template_forward, apply_mmnet_inverse

    Notes
    -----
    The head is the template's: the offline three-layer BEM (conductivities
    0.3, 0.006, 0.3 S/m) and every fsaverage5 white-surface vertex as a
    source with ``trans="fsaverage"``; the electrodes are projected on the
    scalp by :func:`mne.make_forward_solution`, and the vertex leadfields are
    summed per template region, as in :func:`make_template_forward`. For the
    template's 90 channels the result equals the shipped template to single
    precision.

    Both the BEM solution (per ``ico``; 30 MB for ico-3, 470 MB for ico-4,
    stored in double precision) and each cap's forward (keyed by the channel
    names and the positions rounded to 0.1 mm) are cached under
    ``MNE_DATA/mne-mmnet/caps``. Build times measured on this package's
    2-core development machine (one thread, while other jobs kept both
    cores busy):

    ======  ======================  ==========  ===========
    ico     first cap (BEM solve)   later cap   cached cap
    ======  ======================  ==========  ===========
    3       20 s (BEM 6 s)          13 s        0.01 s
    4       125 s (BEM 84 s)        45 s        0.01 s
    ======  ======================  ==========  ===========

    MM-Net runs on a cap's forward without retraining (it works in source
    space). On 100 broad simulations (seed 0) through each cap's ico-4
    forward, the mean global localisation error of the default model is
    29.7 mm for BioSemi-64 (sLORETA 32.5 mm) and 28.7 mm for EGI
    HydroCel-128 (sLORETA 31.7 mm); on the template's 90 channels, 28.4 vs
    31.8 mm (``python benchmarks/bench_caps.py --n 100 --seed 0 --ico 4``).
    """
    from ._build import _region_forward
    from .surfaces import make_fsaverage5_subjects_dir
    from .template import _load_regions, _read_forward

    _validate_type(ico, "int", "ico")
    if ico not in _ICOS:
        raise ValueError(f"ico must be 3 or 4, got {ico}.")
    cap, names, pos = _cap_info(info)
    fname = _cache_dir() / f"cap-{_cap_key(ico, names, pos)}-fwd.fif"
    if fname.is_file():
        fwd = _read_forward(fname)
        if fwd["sol"]["row_names"] == names:
            logger.info(f"Read the cached forward of this cap from {fname}")
            return fwd
    start = time.perf_counter()
    logger.info(
        f"Building the template-head forward for {len(names)} EEG electrodes "
        f"(ico-{ico} BEM, cached in {fname.parent})"
    )
    regions = _load_regions()
    with tempfile.TemporaryDirectory(prefix="mne_mmnet_cap_") as tmp:
        make_fsaverage5_subjects_dir(tmp, overwrite=True, verbose=False)
        bem = _bem(ico, tmp)
        fwd, _ = _region_forward(
            cap, tmp, bem,
            [regions[f"vertex_region_{h}"] for h in ("lh", "rh")],
            [regions[f"representative_{h}"] for h in ("lh", "rh")],
        )  # fmt: skip
    _atomic_write(fname, partial(_write_forward, fwd=fwd))
    logger.info(
        f"Built the forward of {len(names)} electrodes x {fwd['nsource']} regions "
        f"in {time.perf_counter() - start:.1f} s"
    )
    # what a later call reads: the same (single-precision) numbers every time
    return _read_forward(fname)
