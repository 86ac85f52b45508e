"""Turn MNE objects into the (data, leadfield) pair the solvers work on.

Everything that can go wrong with a user's Evoked or Forward is checked here,
once, with an error that says what was found and what to do.
"""

import numpy as np
from mne import Forward, pick_types
from mne.io.constants import FIFF
from mne.utils import _validate_type, logger

from ..forward.template import N_REGIONS
from ._regions import N_FSAVERAGE5 as _N_FSAVERAGE5
from ._regions import (  # noqa: F401 (re-exported for expand_to_vertices, tests)
    _region_membership,
    _subject_regions,
    _sum_over_regions,
    _template_vertices,
    _vertex_regions,
)

#: Fewest good EEG channels we accept. The networks live in source space, so
#: any subset of the template montage works, but below this the 994-region
#: problem is so under-determined that no localisation is meaningful.
MIN_CHANNELS = 16
#: smallest fraction of the ico-5 vertices a vertex-level forward must keep
_MIN_KEPT = 0.5


def _pick_eeg(info, name):
    """Good EEG channels of ``info``: (picks, names), with the count checks."""
    custom = info.get("custom_ref_applied", FIFF.FIFFV_MNE_CUSTOM_REF_OFF)
    if custom == FIFF.FIFFV_MNE_CUSTOM_REF_CSD or "csd" in info.get_channel_types():
        raise ValueError(
            f"{name} holds current source density (CSD) data, which no forward "
            "model describes. Apply MM-Net to the EEG before "
            "mne.preprocessing.compute_current_source_density."
        )
    duplicated = sorted({c for c in info["ch_names"] if info["ch_names"].count(c) > 1})
    if duplicated:  # mne.Info refuses these, but a hand-edited one may not
        raise ValueError(f"{name} has duplicated channel names {duplicated}.")
    picks = pick_types(info, meg=False, eeg=True, exclude="bads")
    n_eeg_all = len(pick_types(info, meg=False, eeg=True, exclude=()))
    if n_eeg_all == 0:
        raise ValueError(
            f"{name} has no EEG channels (channel types found: "
            f"{sorted(set(info.get_channel_types()))}). MM-Net is an EEG "
            "inverse solver: pass EEG data."
        )
    if len(picks) < MIN_CHANNELS:
        raise ValueError(
            f"{name} has {len(picks)} good EEG channels ({n_eeg_all} EEG, "
            f"{n_eeg_all - len(picks)} marked bad); at least {MIN_CHANNELS} are "
            "needed. Interpolate bad channels (evoked.interpolate_bads()) instead "
            "of dropping them."
        )
    return picks, [info["ch_names"][p] for p in picks]


def _check_values(data, ch_names, name):
    """Finite, not all zero, not identical across channels."""
    if not np.isfinite(data).all():
        bad = [ch_names[i] for i in np.unique(np.nonzero(~np.isfinite(data))[0])]
        raise ValueError(
            f"{name} contains NaN or inf values in {len(bad)} EEG channel(s) "
            f"({', '.join(bad[:10])}{', ...' if len(bad) > 10 else ''}). Mark them "
            "as bad or interpolate them before the inverse."
        )
    centred = data - data.mean(axis=0, keepdims=True)
    scale = np.abs(data).max()
    if scale == 0 or np.abs(centred).max() <= 1e-12 * scale:
        what = "all zero" if scale == 0 else "identical on every channel"
        raise ValueError(
            f"{name}'s EEG data are {what}; after the average reference nothing "
            "is left to localise. Check the data or the channel selection."
        )


def _reference_projector(info, ch_names, name, *, quiet=False):
    """Build the projector (n_ch, n_ch) that gives average-referenced data.

    Average reference is a projection, so applying it to data and leadfield
    alike is exact for any common-reference recording (a single electrode,
    linked mastoids, the average). It is not applicable to current source
    density, which is refused.
    """
    custom = info.get("custom_ref_applied", FIFF.FIFFV_MNE_CUSTOM_REF_OFF)
    log = (lambda *a: None) if quiet else logger.info
    n = len(ch_names)
    average = np.eye(n) - np.full((n, n), 1.0 / n)
    # every other EEG projector (SSP) must act on the leadfield too, as in MNE
    other = [
        p
        for p in info["projs"]
        if p["desc"] != "Average EEG reference"
        and any(c in ch_names for c in p["data"]["col_names"])
    ]
    proj = np.eye(n)
    if other:
        proj, n_proj = _ssp_projector(other, ch_names)
        log(f"    Applying {n_proj} EEG projection vector(s) to data and fwd")
    has_avg_proj = any(p["desc"] == "Average EEG reference" for p in info["projs"])
    if has_avg_proj:
        reference = "average (projector)"
    elif custom == FIFF.FIFFV_MNE_CUSTOM_REF_ON:
        # set_eeg_reference() to the average or to electrodes: still a common
        # reference, so re-referencing data and leadfield to the average is exact
        reference = "average (re-referenced from a custom reference)"
        log("    Re-referencing the custom EEG reference to the average")
    else:
        reference = "average (applied by mne-mmnet)"
        log(
            "    No EEG reference information found: applying an average "
            "reference to data and leadfield (exact for common-reference data)"
        )
    return average @ proj, reference


def _ssp_projector(projs, ch_names):
    """``I - U U'`` with ``U`` an orthonormal basis of the SSP vectors on ch_names.

    What ``mne.io.Projection`` application does (MNE's own helper is private).
    """
    index = {name: k for k, name in enumerate(ch_names)}
    vectors = []
    for p in projs:
        cols = p["data"]["col_names"]
        for row in np.atleast_2d(p["data"]["data"]):
            v = np.zeros(len(ch_names))
            for name, value in zip(cols, row):
                if name in index:
                    v[index[name]] = value
            if np.linalg.norm(v) > 0:
                vectors.append(v / np.linalg.norm(v))
    if not vectors:
        return np.eye(len(ch_names)), 0
    u, s, _ = np.linalg.svd(np.array(vectors).T, full_matrices=False)
    u = u[:, s > s.max() * 1e-10]
    return np.eye(len(ch_names)) - u @ u.T, u.shape[1]


#: old 10-20 names and their positions' current names
_ALIASES = {"t3": "t7", "t4": "t8", "t5": "p7", "t6": "p8"}
#: reference suffixes of EDF-style labels ("EEG Fp1-REF")
_SUFFIXES = ("-ref", "-le", "-re", "-avg", "-a1", "-a2", "-m1", "-m2", "-cz")
#: largest distance between a data electrode and the template electrode it is
#: matched to by name (m)
MAX_POSITION_ERROR = 0.03
#: what to do when the data's electrodes are not the forward's
_CAP_FIX = (
    "To use your cap's own electrodes, build its forward on the template head "
    "(the channels need positions: inst.set_montage(...)): "
    "fwd = mne_mmnet.make_cap_forward(inst.info), then "
    "mne_mmnet.apply_mmnet_inverse(inst, fwd)"
)


def _canonical(name):
    key = name.strip().casefold()
    if key.startswith("eeg "):
        key = key[4:].strip()
    for suffix in _SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
            break
    return _ALIASES.get(key, key)


def _channel_positions(info):
    """``{name: position}`` of the channels of ``info`` that have one."""
    locs = np.array([ch["loc"][:3] for ch in info["chs"]], float).reshape(-1, 3)
    known = np.isfinite(locs).all(axis=1) & np.any(locs != 0, axis=1)
    return {ch["ch_name"]: loc for ch, loc, k in zip(info["chs"], locs, known) if k}


def _match_channels(info, ch_names, fwd, name):
    """Forward row for each data channel: exact, then case/alias/EDF-style.

    Where the data carry electrode positions, a channel matched by name must
    lie within 3 cm of the forward's electrode of that name.
    """
    rows = set(fwd["sol"]["row_names"])
    by_key = {}
    for row in fwd["sol"]["row_names"]:
        by_key.setdefault(_canonical(row), row)
    positions, template = _channel_positions(info), _channel_positions(fwd["info"])
    matched, renamed, missing, misplaced = [], [], [], []
    for ch in ch_names:
        row = ch if ch in rows else by_key.get(_canonical(ch))
        if row is None:
            missing.append(ch)
            continue
        if row != ch:
            renamed.append(f"{ch} -> {row}")
        mine, theirs = positions.get(ch), template.get(row)
        if mine is not None and theirs is not None:
            dist = float(np.linalg.norm(mine - theirs))
            if dist > MAX_POSITION_ERROR:
                misplaced.append(f"{ch} ({100 * dist:.1f} cm from {row})")
        matched.append(row)
    if renamed:
        logger.info(f"    Matched {len(renamed)} channel name(s): {', '.join(renamed)}")
    if misplaced:
        raise ValueError(
            f"{len(misplaced)} channel(s) of {name} match template names but not "
            f"template positions: {', '.join(misplaced[:8])}. The names mean "
            "other electrodes here (e.g. a BioSemi A1 is not the earlobe A1). "
            f"{_CAP_FIX} (or mark those channels as bad)."
        )
    if missing:
        raise ValueError(
            f"{len(missing)} good EEG channel(s) of {name} are not in fwd, even "
            f"ignoring case, 'EEG ' prefixes and '-REF' suffixes: "
            f"{', '.join(missing[:10])}{', ...' if len(missing) > 10 else ''}. "
            f"{_CAP_FIX}. If they are 10-20 electrodes, rename them to their "
            "10-20 names instead (inst.rename_channels; the template has the 90 "
            "in mne_mmnet.TEMPLATE_CH_NAMES), or mark them as bad (info['bads'])."
        )
    return matched


def _prepare_leadfield(fwd, ch_names, subjects_dir=None):
    """Template-region leadfield rows for ``ch_names`` and the stc layout.

    Returns ``(leadfield, vertices, subject)``, leadfield ``(n_ch, 994)``.
    A forward on an individual subject's source space needs the subject's
    spherical registration under ``subjects_dir``.
    """
    _validate_type(fwd, Forward, "fwd", "mne.Forward")
    if not fwd["surf_ori"] or fwd["source_ori"] != FIFF.FIFFV_MNE_FIXED_ORI:
        raise ValueError(
            "fwd must have fixed source orientation (one column per source), got "
            f"a free-orientation forward with {fwd['nsource']} sources x 3. Use "
            "mne_mmnet.read_template_forward(), or convert yours with "
            "mne.convert_forward_solution(fwd, surf_ori=True, force_fixed=True)."
        )
    index = {row: k for k, row in enumerate(fwd["sol"]["row_names"])}
    missing = [ch for ch in ch_names if ch not in index]
    if missing:  # names come from _match_channels: this is a programming error
        raise ValueError(f"Channels {missing} are not in fwd.")
    rows = [index[ch] for ch in ch_names]
    gain = np.asarray(fwd["sol"]["data"], np.float64)[rows]
    if not np.isfinite(gain).all():
        raise ValueError("fwd's gain matrix has NaN or inf entries; rebuild it.")
    zero = np.flatnonzero(~np.any(gain != 0, axis=0))
    if zero.size:
        raise ValueError(
            f"fwd has {zero.size} all-zero gain column(s) (sources {zero[:5]}"
            f"{'...' if zero.size > 5 else ''}) for these channels: such sources "
            "are invisible and cannot be estimated. Rebuild the forward (sources "
            "inside the inner skull, mindist=0) or use the template."
        )
    src = fwd["src"]
    vertices = [np.asarray(s["vertno"]) for s in src]
    subject = src._subject
    template = _template_vertices()
    n_src = sum(len(v) for v in vertices)
    if (
        len(vertices) == 2
        and n_src == N_REGIONS
        and all(np.array_equal(v, t) for v, t in zip(vertices, template))
    ):
        return gain, vertices, subject
    # a vertex-level forward keeps most vertices (mindist drops ~10-15%); a
    # handful of sources on ico-5 numbers is a region-level forward of
    # another layout, not one that dropped 95% of its vertices
    fsaverage = subject in (None, "fsaverage", "fsaverage5")
    if (
        fsaverage
        and len(vertices) == 2
        and n_src >= _MIN_KEPT * 2 * _N_FSAVERAGE5
        and all(
            s["np"] >= _N_FSAVERAGE5 and len(v) and v.max() < _N_FSAVERAGE5
            for s, v in zip(src, vertices)
        )
    ):
        rows = np.r_[vertices[0], vertices[1] + _N_FSAVERAGE5]
        regions = _vertex_regions()[rows]
        return (
            _sum_over_regions(gain, regions, subject),
            template,
            subject or ("fsaverage"),
        )
    if len(vertices) == 2 and not fsaverage:
        regions = _subject_regions(src, subject, subjects_dir)
        return _sum_over_regions(gain, regions, subject), template, subject
    raise ValueError(
        f"fwd has {n_src} sources in {len(vertices)} source space(s); MM-Net "
        f"needs the fsaverage template layout: either the {N_REGIONS}-region "
        "template (mne_mmnet.read_template_forward()), a fixed-orientation "
        "forward on an ico-5 source space (vertex numbers below 10,242 in each "
        "hemisphere: mne.setup_source_space('fsaverage', 'ico5') with the "
        "subjects_dir of mne_mmnet.template_subjects_dir()), or a forward on an "
        "individual subject's cortical source space (both hemispheres, e.g. "
        "from mne.morph_source_spaces) with subjects_dir= holding the subject."
    )
