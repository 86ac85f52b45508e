"""fsaverage5 cortical meshes from nilearn's shipped files, in FreeSurfer layout."""

import shutil
from pathlib import Path

import numpy as np
from mne.utils import _validate_type, logger, verbose

N_VERTICES_PER_HEMI = 10242

# (FreeSurfer surface name, nilearn file stem)
_MESH_FILES = {
    "white": "white",
    "pial": "pial",
    "inflated": "infl",
    "sphere": "sphere",
}
_MORPH_FILES = {"curv": "curv", "sulc": "sulc", "thickness": "thick"}
_NILEARN_HEMI = {"lh": "left", "rh": "right"}
# fixed stamp so that rewritten geometry files are byte-identical
_CREATE_STAMP = "created by mne-mmnet from nilearn's fsaverage5 meshes"


def _nilearn_fsaverage5_dir():
    """Return the folder of nilearn's shipped fsaverage5 files."""
    try:
        import nilearn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "nilearn is needed to read the fsaverage5 meshes it ships; install it "
            "with `pip install nilearn` (optional dependency group 'template')."
        ) from exc
    path = Path(nilearn.__file__).parent / "datasets" / "data" / "fsaverage5"
    if not path.is_dir():  # pragma: no cover
        raise FileNotFoundError(f"nilearn's fsaverage5 folder is missing: {path}")
    return path


def _read_gifti_arrays(fname):
    import nibabel as nib

    return [np.asarray(arr.data) for arr in nib.load(fname).darrays]


def _read_fsaverage5_mesh(kind, hemi):
    """Read one fsaverage5 mesh shipped by nilearn.

    Returns
    -------
    rr : ndarray, shape (10242, 3)
        Vertex positions in millimetres (FreeSurfer surface RAS), float64.
    tris : ndarray, shape (20480, 3)
        Triangles, int64.
    """
    fname = (
        _nilearn_fsaverage5_dir() / f"{_MESH_FILES[kind]}_{_NILEARN_HEMI[hemi]}.gii.gz"
    )
    rr, tris = _read_gifti_arrays(fname)
    rr = rr.astype(np.float64)
    tris = tris.astype(np.int64)
    if rr.shape != (N_VERTICES_PER_HEMI, 3):
        raise RuntimeError(f"Unexpected fsaverage5 mesh shape {rr.shape} in {fname}")
    return rr, tris


def _read_fsaverage5_morph(kind, hemi):
    """Read one per-vertex fsaverage5 map (curv, sulc, thickness) shipped by nilearn."""
    fname = (
        _nilearn_fsaverage5_dir() / f"{_MORPH_FILES[kind]}_{_NILEARN_HEMI[hemi]}.gii.gz"
    )
    (values,) = _read_gifti_arrays(fname)
    return values.astype(np.float32)


def _is_complete(subject_dir):
    names = [
        f"surf/{h}.{k}" for h in ("lh", "rh") for k in (*_MESH_FILES, "sphere.reg")
    ]
    names += [f"surf/{h}.{k}" for h in ("lh", "rh") for k in _MORPH_FILES]
    names += ["bem/fsaverage-head.fif", "bem/fsaverage-trans.fif"]
    return all((subject_dir / name).is_file() for name in names)


@verbose
def make_fsaverage5_subjects_dir(subjects_dir, *, overwrite=False, verbose=None):
    """Write a minimal FreeSurfer ``fsaverage`` subject with fsaverage5 meshes.

    Creates ``subjects_dir/fsaverage/surf/{lh,rh}.{white,pial,inflated,sphere,
    sphere.reg,curv,sulc,thickness}`` from the fsaverage5 meshes that nilearn
    ships (10,242 vertices per hemisphere), and copies the scalp, inner skull,
    fiducials and head<->MRI transform that MNE-Python ships into
    ``subjects_dir/fsaverage/bem/``. This is enough for
    :meth:`mne.SourceEstimate.plot` / :class:`mne.viz.Brain` on the template
    source space without :func:`mne.datasets.fetch_fsaverage` (no network),
    and for :func:`mne.coreg.scale_mri` to make a scaled copy of the template
    as a stand-in for a subject without MRI (an empty ``mri`` folder: no
    volumes are written).

    Parameters
    ----------
    subjects_dir : path-like
        Folder in which to create the ``fsaverage`` subject. Created if needed.
    overwrite : bool
        Rewrite the files even if a complete subject made by this function is
        already there (by default it is reused; an incomplete or foreign
        ``fsaverage`` folder raises).
    %(verbose)s

    Returns
    -------
    subjects_dir : pathlib.Path
        The folder, to pass as ``subjects_dir=`` to MNE functions.

    Raises
    ------
    FileExistsError
        If ``subjects_dir/fsaverage`` exists without the files this function
        writes and ``overwrite`` is False (it is not overwritten silently).
    ImportError
        If nilearn is not installed.

    Notes
    -----
    The surfaces are fsaverage5 (ico-5) rather than the full-resolution
    fsaverage (163,842 vertices per hemisphere); their vertex indices are the
    first 10,242 vertices of fsaverage, so source estimates on the template
    plot on either. ``sphere.reg`` is a copy of ``sphere`` (fsaverage is its own
    registration target).
    """
    import mne
    import nibabel.freesurfer as nfs

    _validate_type(subjects_dir, "path-like", "subjects_dir")
    _validate_type(overwrite, bool, "overwrite")
    subjects_dir = Path(subjects_dir).expanduser().resolve()
    subject_dir = subjects_dir / "fsaverage"
    if subject_dir.exists() and not overwrite:
        if _is_complete(subject_dir):
            logger.info(f"Using the fsaverage5 subject already in {subject_dir}")
            (subject_dir / "mri").mkdir(exist_ok=True)  # folders made before it
            return subjects_dir
        raise FileExistsError(
            f"{subject_dir} already exists but is not a complete subject written "
            "by make_fsaverage5_subjects_dir; pass overwrite=True to replace its "
            "surface files, or use another subjects_dir."
        )
    surf_dir = subject_dir / "surf"
    bem_dir = subject_dir / "bem"
    surf_dir.mkdir(parents=True, exist_ok=True)
    bem_dir.mkdir(parents=True, exist_ok=True)
    # no volumes; the folder lets mne.coreg.scale_mri scale the template
    (subject_dir / "mri").mkdir(exist_ok=True)
    for hemi in ("lh", "rh"):
        for kind in _MESH_FILES:
            rr, tris = _read_fsaverage5_mesh(kind, hemi)
            names = [kind] + (["sphere.reg"] if kind == "sphere" else [])
            for name in names:
                nfs.write_geometry(
                    surf_dir / f"{hemi}.{name}", rr, tris, create_stamp=_CREATE_STAMP
                )
        for kind in _MORPH_FILES:
            values = _read_fsaverage5_morph(kind, hemi)
            nfs.write_morph_data(surf_dir / f"{hemi}.{kind}", values, fnum=20480)
    mne_dir = Path(mne.__file__).parent / "data" / "fsaverage"
    for name in (
        "fsaverage-head.fif",
        "fsaverage-inner_skull-bem.fif",
        "fsaverage-fiducials.fif",
        "fsaverage-trans.fif",
    ):
        shutil.copyfile(mne_dir / name, bem_dir / name)
    logger.info(f"Wrote fsaverage5 surfaces to {surf_dir}")
    return subjects_dir
