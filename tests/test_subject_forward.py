"""A forward on an individual subject's source space, mapped through sphere.reg."""

import mne
import numpy as np
import pytest

import mne_mmnet
from mne_mmnet import TEMPLATE_CH_NAMES, apply_mmnet_inverse
from mne_mmnet.simulation import simulate_sereega

FAST = dict(model=None, n_iter=2, device="cpu")


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    """fsaverage, and "sub-01": the same surfaces with the vertices reordered.

    Morphing fsaverage's ico-5 source space to sub-01 renumbers every vertex,
    as a morph to a real subject does; the geometry is unchanged, so the
    region leadfield must be the fsaverage one exactly.
    """
    sd = tmp_path_factory.mktemp("subjects")
    (sd / "fsaverage").symlink_to(mne_mmnet.template_subjects_dir() / "fsaverage")
    (sd / "sub-01" / "surf").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for hemi in ("lh", "rh"):
        order = rng.permutation(10242)  # new vertex i is old vertex order[i]
        new_index = np.argsort(order)
        for kind in ("white", "sphere.reg"):
            rr, tris = mne.read_surface(sd / "fsaverage" / "surf" / f"{hemi}.{kind}")
            mne.write_surface(
                sd / "sub-01" / "surf" / f"{hemi}.{kind}", rr[order], new_index[tris]
            )
    return sd


def _forward(src, info):
    cortex = np.concatenate([s["rr"][s["vertno"]] for s in src])
    radius, origin, _ = mne.bem.fit_sphere_to_headshape(
        info, dig_kinds=("eeg",), units="m", verbose=False
    )
    inner = np.linalg.norm(cortex - origin, axis=1).max() + 2e-3
    scalp = max(radius, inner + 9e-3)
    sphere = mne.make_sphere_model(
        origin, scalp, relative_radii=(inner / scalp, (inner + 5e-3) / scalp, 1.0),
        sigmas=(0.33, 0.0042, 0.33), verbose=False,
    )  # fmt: skip
    fwd = mne.make_forward_solution(info, None, src, sphere, verbose=False)
    return mne.convert_forward_solution(
        fwd, surf_ori=True, force_fixed=True, verbose=False
    )


def test_morphed_source_space_maps_through_the_spherical_registration(
    subjects, tmp_path
):
    info = mne.create_info(list(TEMPLATE_CH_NAMES), 250.0, "eeg")
    info.set_montage("colin27_1020")
    src = mne.setup_source_space(
        "fsaverage", "ico5", subjects_dir=subjects, add_dist=False, verbose=False
    )
    src_sub = mne.morph_source_spaces(src, "sub-01", subjects_dir=subjects,
                                      verbose=False)  # fmt: skip
    fwd = _forward(src, info)
    fwd_sub = _forward(src_sub, info)
    # the same vertex numbers, other vertices: the columns are reordered
    assert not np.allclose(fwd_sub["sol"]["data"], fwd["sol"]["data"])
    sim = simulate_sereega(1, seed=2, snr_db=10.0, verbose=False)
    evoked = mne.EvokedArray(sim.eeg[0].astype(float), info)
    evoked.set_eeg_reference("average", projection=True, verbose=False)
    ref = apply_mmnet_inverse(evoked, fwd, **FAST)
    stc = apply_mmnet_inverse(evoked, fwd_sub, subjects_dir=subjects, **FAST)
    assert stc.subject == "sub-01"
    assert all(np.array_equal(a, b) for a, b in zip(stc.vertices, ref.vertices))
    np.testing.assert_allclose(stc.data, ref.data, rtol=1e-5,
                               atol=1e-5 * np.abs(ref.data).max())  # fmt: skip
    inv = mne_mmnet.make_mmnet_inverse(info, fwd_sub, None, subjects_dir=subjects)
    np.testing.assert_allclose(
        inv.leadfield,
        mne_mmnet.make_mmnet_inverse(info, fwd, None).leadfield,
        rtol=1e-6,
    )
    # without the subject's registration the mapping is refused, not guessed
    with pytest.raises(ValueError, match="spherical registration"):
        apply_mmnet_inverse(evoked, fwd_sub, subjects_dir=tmp_path, **FAST)
