"""Offline three-layer BEM surfaces for fsaverage from files MNE-Python ships."""

from pathlib import Path

import numpy as np
from mne.utils import logger

# outer skull = inner skull + min(_SKULL_THICKNESS, _SKULL_FRACTION * gap to scalp)
_SKULL_THICKNESS = 6e-3  # m
_SKULL_FRACTION = 0.5


def _mne_fsaverage_dir():
    import mne

    return Path(mne.__file__).parent / "data" / "fsaverage"


def _read_mne_surface(name):
    """Read one BEM surface shipped with MNE (positions in metres, MRI frame)."""
    import mne

    (surf,) = mne.read_bem_surfaces(_mne_fsaverage_dir() / name, verbose=False)
    return surf["rr"].astype(np.float64), surf["tris"].astype(np.int64)


def _ray_mesh_distance(origin, directions, rr, tris, chunk=256):
    """Distance along each ray to its farthest crossing of a closed triangle mesh.

    Vectorised Moller-Trumbore intersection. The farthest crossing is used so
    that folds of the scalp (ears, nose) never pull a point inwards.
    """
    v0 = rr[tris[:, 0]]
    e1 = rr[tris[:, 1]] - v0
    e2 = rr[tris[:, 2]] - v0
    t_hit = np.full(len(directions), np.nan)
    for start in range(0, len(directions), chunk):
        d = directions[start : start + chunk, np.newaxis, :]  # (c, 1, 3)
        p = np.cross(d, e2[np.newaxis])  # (c, n_tri, 3)
        det = np.einsum("ctk,tk->ct", p, e1)
        ok = np.abs(det) > 1e-14
        inv_det = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = origin - v0  # (n_tri, 3)
        u = np.einsum("ctk,tk->ct", p, s) * inv_det
        q = np.cross(s, e1)  # (n_tri, 3)
        v = np.einsum("cak,tk->ct", d, q) * inv_det
        t = np.einsum("tk,tk->t", e2, q)[np.newaxis] * inv_det
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        t = np.where(hit, t, -np.inf).max(axis=1)
        t_hit[start : start + chunk] = np.where(np.isfinite(t), t, np.nan)
    return t_hit


def _make_offline_bem_surfaces():
    """Inner skull, synthetic outer skull and scalp sharing the inner-skull mesh.

    The inner skull is MNE's shipped ico-5 ``fsaverage-inner_skull-bem.fif``.
    For each inner-skull vertex, a ray from the inner-skull centroid through the
    vertex is cast to MNE's shipped scalp ``fsaverage-head.fif``; the scalp
    layer is placed at that crossing and the outer skull at
    ``inner + min(6 mm, gap / 2)`` along the same ray, so the three layers
    share the ico-5 topology (required by :func:`mne.make_bem_model`'s ``ico``
    decimation) and nest by construction.

    Returns
    -------
    surfaces : dict
        ``inner_skull``, ``outer_skull``, ``outer_skin``: each ``(rr, tris)``
        with ``rr`` in metres (MRI frame).
    """
    inner_rr, tris = _read_mne_surface("fsaverage-inner_skull-bem.fif")
    head_rr, head_tris = _read_mne_surface("fsaverage-head.fif")
    centre = inner_rr.mean(axis=0)
    radius = np.linalg.norm(inner_rr - centre, axis=1)
    directions = (inner_rr - centre) / radius[:, np.newaxis]
    scalp_dist = _ray_mesh_distance(centre, directions, head_rr, head_tris)
    if np.isnan(scalp_dist).any() or (scalp_dist <= radius).any():
        raise RuntimeError(
            "Could not place the scalp outside the inner skull along every ray "
            f"({np.isnan(scalp_dist).sum()} rays missed the scalp)."
        )
    gap = scalp_dist - radius
    skull = np.minimum(_SKULL_THICKNESS, _SKULL_FRACTION * gap)
    outer_rr = inner_rr + skull[:, np.newaxis] * directions
    scalp_rr = centre + scalp_dist[:, np.newaxis] * directions
    logger.info(
        f"Offline BEM: inner-skull-to-scalp gap {1e3 * gap.min():.1f}-"
        f"{1e3 * gap.max():.1f} mm, skull {1e3 * skull.min():.1f}-"
        f"{1e3 * skull.max():.1f} mm"
    )
    return dict(
        inner_skull=(inner_rr, tris),
        outer_skull=(outer_rr, tris.copy()),
        outer_skin=(scalp_rr, tris.copy()),
    )


def _write_bem_surfaces(surfaces, bem_dir):
    """Write the surfaces as FreeSurfer ``.surf`` files (mm) for make_bem_model."""
    import mne

    bem_dir = Path(bem_dir)
    bem_dir.mkdir(parents=True, exist_ok=True)
    for name, (rr, tris) in surfaces.items():
        mne.write_surface(
            bem_dir / f"{name}.surf", rr * 1e3, tris, overwrite=True, verbose=False
        )
