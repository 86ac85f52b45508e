"""The 994 template regions on fsaverage5's vertices, and forwards mapped to them.

A vertex-level forward (fsaverage5 numbering, or a subject's own source space
through its spherical registration) becomes a region-level leadfield here.
"""

from functools import cache

import numpy as np
from mne.io.constants import FIFF
from mne.utils import logger

from ..forward import read_template_labels
from ..forward.template import N_REGIONS

#: Vertices per hemisphere of fsaverage5, and of an ico-5 source space on
#: fsaverage (FreeSurfer's icosahedral surfaces nest, so both use 0..10241).
N_FSAVERAGE5 = 10242


def _sum_over_regions(gain, regions, subject):
    """Sum the columns of a vertex-level forward over the template regions.

    ``regions`` gives each column's template region. Each region's sum is
    scaled by (fsaverage5 vertices in the region) / (columns mapped to it), so
    that dropped vertices (e.g. too close to the inner skull) and source
    spaces of another density are made up for; a region with no column left
    cannot be estimated and is refused.
    """
    from scipy import sparse

    n_all = np.bincount(_vertex_regions(), minlength=N_REGIONS)
    n_kept = np.bincount(regions, minlength=N_REGIONS)
    lost = np.flatnonzero(n_kept == 0)
    if lost.size:
        labels = read_template_labels(verbose=False)
        names = ", ".join(labels[k].name for k in lost[:5])
        raise ValueError(
            f"fwd dropped every vertex of {lost.size} template region(s) ({names}"
            f"{', ...' if lost.size > 5 else ''}): they cannot be estimated. Build "
            "the forward so that each region keeps at least one vertex: a smaller "
            "mindist (0 keeps them all), and a head model whose inner skull "
            "encloses the whole cortex (sources outside it are always dropped)."
        )
    who = "fsaverage" if subject in (None, "fsaverage") else f"subject {subject!r}"
    missing = max(2 * N_FSAVERAGE5 - len(regions), 0)
    logger.info(
        f"    Summing the vertex-level forward of {who} ({len(regions)} sources) "
        f"over the {N_REGIONS} template regions"
        + (f" ({missing} dropped vertices made up by scaling)" if missing else "")
    )
    columns = sparse.csr_array(
        (np.ones(len(regions)), (np.arange(len(regions)), regions)),
        shape=(len(regions), N_REGIONS),
    )
    return (gain @ columns) * (n_all / n_kept)


def _subject_regions(src, subject, subjects_dir):
    """Template region of every source of a subject's own source space.

    Each source takes the region of the nearest fsaverage5 vertex on the
    spherical registration (FreeSurfer's ``?h.sphere.reg``): the
    correspondence :func:`mne.morph_source_spaces` and
    :func:`mne.compute_source_morph` use.
    """
    from mne import read_surface
    from mne.utils import get_subjects_dir
    from scipy.spatial import cKDTree

    from ..forward.surfaces import _read_fsaverage5_mesh

    subjects_dir = get_subjects_dir(subjects_dir)
    hemis = {FIFF.FIFFV_MNE_SURF_LEFT_HEMI: "lh", FIFF.FIFFV_MNE_SURF_RIGHT_HEMI: "rh"}
    if [s.get("id") for s in src] != list(hemis):
        raise ValueError(
            f"fwd is on subject {subject!r}'s own source space, which needs a left "
            "and a right cortical hemisphere (in that order) to be mapped to the "
            "template regions; got source spaces of kind "
            f"{[s.get('type') for s in src]}."
        )
    vertex_regions = _vertex_regions()
    out = []
    for h, (s, hemi) in enumerate(zip(src, hemis.values())):
        fname = (
            None if subjects_dir is None
            else subjects_dir / subject / "surf" / f"{hemi}.sphere.reg"
        )  # fmt: skip
        if fname is None or not fname.is_file():
            raise ValueError(
                f"fwd is on subject {subject!r}'s own source space: mapping it to "
                "the template regions needs the subject's spherical registration "
                f"(surf/{hemi}.sphere.reg), not found in subjects_dir="
                f"{subjects_dir}. Pass subjects_dir= (the FreeSurfer subjects "
                "folder holding the subject) or set SUBJECTS_DIR."
            )
        rr = read_surface(fname)[0]
        if len(rr) != s["np"]:
            raise ValueError(
                f"{fname} has {len(rr)} vertices, fwd's {hemi} source space "
                f"{s['np']}: they are not the same subject's surfaces."
            )
        ref = _read_fsaverage5_mesh("sphere", hemi)[0]
        unit = rr[s["vertno"]] / np.linalg.norm(rr[s["vertno"]], axis=1)[:, None]
        _, nearest = cKDTree(ref / np.linalg.norm(ref, axis=1)[:, None]).query(unit)
        out.append(vertex_regions[nearest + h * N_FSAVERAGE5])
    return np.concatenate(out)


def _template_vertices():
    """Vertex numbers of the template regions (fresh copies, lh and rh)."""
    return [v.copy() for v in _cached_template_vertices()]


@cache
def _cached_template_vertices():
    from ..forward import read_template_forward

    src = read_template_forward(verbose=False)["src"]
    return tuple(np.asarray(s["vertno"]) for s in src)


@cache
def _vertex_regions():
    """Template region of each of the 20,484 fsaverage5 vertices (read-only)."""
    regions = _region_membership().tocsr().indices  # one entry per row
    regions.setflags(write=False)
    return regions


@cache
def _region_membership():
    """Sparse (20484, 994) matrix summing vertex columns into regions.

    Cached: read-only by convention (only ever multiplied).
    """
    from scipy import sparse

    labels = read_template_labels(verbose=False)
    rows, cols = [], []
    for ri, label in enumerate(labels):
        offset = 0 if label.hemi == "lh" else N_FSAVERAGE5
        rows.append(label.vertices + offset)
        cols.append(np.full(len(label.vertices), ri))
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sparse.csr_array(
        (np.ones(len(rows)), (rows, cols)), shape=(2 * N_FSAVERAGE5, N_REGIONS)
    )
