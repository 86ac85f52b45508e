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


def _template_info(sfreq):
    info = mne.create_info(list(TEMPLATE_CH_NAMES), sfreq, "eeg")
    info.set_montage("colin27_1020")
    return info


def _morphed_source_space(subjects_dir, subject):
    """fsaverage's ico-5 source space, and the same morphed to ``subject``."""
    src = mne.setup_source_space(
        "fsaverage", "ico5", subjects_dir=subjects_dir, add_dist=False, verbose=False
    )
    src_sub = mne.morph_source_spaces(src, subject, subjects_dir=subjects_dir,
                                      verbose=False)  # fmt: skip
    return src, src_sub


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
    info = _template_info(250.0)
    src, src_sub = _morphed_source_space(subjects, "sub-01")
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


def _rotation(axis, degrees):
    """Rotation matrix about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]],
                  [-axis[1], axis[0], 0]])  # fmt: skip
    angle = np.deg2rad(degrees)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _deform(rr):
    """A head other than the template: anisotropic scaling and a smooth warp (m)."""
    centre = rr.mean(0)
    out = centre + (rr - centre) * np.array([0.94, 1.05, 0.97])
    out[:, 2] += 2e-3 * np.sin(rr[:, 1] / 0.02)  # 2 mm folds of 12 cm wavelength
    return out


@pytest.fixture(scope="module")
def other_head(tmp_path_factory):
    """Subject sub-02: another cortex, another numbering, an imperfect registration.

    Vertex ``i`` of sub-02 is fsaverage vertex ``order[i]`` on a scaled and
    warped white surface; its spherical registration is fsaverage's rotated by
    1.5 degrees (a registration error of about 2.6 mm on the sphere), so
    fsaverage's vertices and sub-02's do not correspond one to one.
    Returns the subjects folder and, per hemisphere, ``order``.
    """
    sd = tmp_path_factory.mktemp("subjects2")
    (sd / "fsaverage").symlink_to(mne_mmnet.template_subjects_dir() / "fsaverage")
    (sd / "sub-02" / "surf").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rotation = _rotation([0.3, -0.5, 0.8], 1.5)
    orders = {}
    for hemi in ("lh", "rh"):
        order = rng.permutation(10242)
        new_index = np.argsort(order)
        surf = sd / "fsaverage" / "surf"
        rr, tris = mne.read_surface(surf / f"{hemi}.white")
        mne.write_surface(sd / "sub-02" / "surf" / f"{hemi}.white",
                          _deform(rr / 1e3)[order] * 1e3, new_index[tris])  # fmt: skip
        rr, tris = mne.read_surface(surf / f"{hemi}.sphere.reg")
        mne.write_surface(sd / "sub-02" / "surf" / f"{hemi}.sphere.reg",
                          (rr @ rotation.T)[order], new_index[tris])  # fmt: skip
        orders[hemi] = order
    return sd, orders


def _true_region_gain(fwd_sub, orders):
    """Region leadfield of sub-02 from its construction, not from sphere.reg.

    Each source of sub-02 is the fsaverage vertex it was made from, whose
    template region is read from the template's labels; a region's column is
    the sum of its sources' columns, scaled by (region size) / (sources kept).
    """
    labels = mne_mmnet.forward.read_template_labels(verbose=False)
    region_of = {"lh": np.empty(10242, int), "rh": np.empty(10242, int)}
    for k, label in enumerate(labels):
        region_of[label.hemi][label.vertices] = k
    regions = np.concatenate([
        region_of[hemi][orders[hemi][s["vertno"]]]
        for hemi, s in zip(("lh", "rh"), fwd_sub["src"])
    ])  # fmt: skip
    gain = fwd_sub["sol"]["data"]
    size = np.bincount(np.concatenate([region_of["lh"], region_of["rh"]]),
                       minlength=len(labels))  # fmt: skip
    kept = np.bincount(regions, minlength=len(labels))
    assert kept.min() > 0
    summed = np.stack([gain[:, regions == k].sum(1) for k in range(len(labels))], 1)
    return summed * size / kept


def test_forward_of_another_head_localises_as_well_as_sloreta(
    other_head, one_torch_thread
):
    """A morphed forward on another head: regions follow the registration.

    Data simulated with sub-02's forward and the regions of its construction
    (an independent reference), inverted with the default model through
    sub-02's forward and its sphere.reg: the MM-Net estimate localises at least
    as well as sLORETA with the same (subject) leadfield.
    """
    import torch

    from mne_mmnet.metrics import global_localization_error
    from mne_mmnet.simulation import simulate_broad
    from mne_mmnet.solver import initial_estimate

    subjects, orders = other_head
    info = _template_info(512.0)
    _, src_sub = _morphed_source_space(subjects, "sub-02")
    fwd_sub = _forward(src_sub, info)
    truth = _true_region_gain(fwd_sub, orders)
    inv = mne_mmnet.make_mmnet_inverse(info, fwd_sub, subjects_dir=subjects)
    # the registration maps sources to their own region or a neighbour: the
    # region leadfields agree to within the 2.6 mm registration error
    proj = np.eye(len(info.ch_names)) - 1.0 / len(info.ch_names)
    corr = np.sum(inv.leadfield * (proj @ truth), 0) / (
        np.linalg.norm(inv.leadfield, axis=0) * np.linalg.norm(proj @ truth, axis=0)
    )
    # measured: median 0.995, 5 % quantile 0.86
    assert np.median(corr) > 0.99 and np.quantile(corr, 0.05) > 0.8, corr
    sim = simulate_broad(40, seed=3, leadfield=truth, sfreq=512.0, verbose=False)
    epochs = mne.EpochsArray(sim.eeg.astype(float), info, verbose=False)
    epochs.set_eeg_reference(projection=True, verbose=False)
    stcs = mne_mmnet.apply_mmnet_inverse_epochs(epochs, inv, verbose=False)
    assert all(s.subject == "sub-02" for s in stcs)
    x_mmnet = np.stack([s.data for s in stcs])
    y = torch.as_tensor(proj @ sim.eeg, dtype=torch.float64)
    x_sloreta = initial_estimate(y, torch.as_tensor(inv.leadfield),
                                 init="sloreta").numpy()  # fmt: skip
    rr = mne_mmnet.read_template_forward()["source_rr"]
    le_mmnet, le_sloreta = (
        global_localization_error(x, sim.sources, seeds=sim.seeds, positions=rr).mean()
        for x in (x_mmnet, x_sloreta)
    )
    # README quotes this line (40 samples, seed 3: 20.9 vs 30.9 mm)
    print(f"global LE on sub-02: MM-Net {le_mmnet:.1f} mm, sLORETA {le_sloreta:.1f} mm")
    assert le_mmnet <= le_sloreta, (le_mmnet, le_sloreta)


def test_scaled_template_stands_in_for_a_subject(tmp_path):
    """mne.coreg.scale_mri on the template: a subject whose regions are known.

    A scaled fsaverage keeps fsaverage's vertices and registration, so each of
    its sources belongs to the region of the same fsaverage vertex number.
    """
    import shutil

    shutil.copytree(mne_mmnet.template_subjects_dir() / "fsaverage",
                    tmp_path / "fsaverage")  # fmt: skip
    mne.coreg.scale_mri("fsaverage", "sub-03", [0.94, 1.05, 0.97],
                        subjects_dir=tmp_path, labels=False, annot=False,
                        verbose=False)  # fmt: skip
    info = _template_info(250.0)
    _, src_sub = _morphed_source_space(tmp_path, "sub-03")
    fwd_sub = _forward(src_sub, info)
    labels = mne_mmnet.forward.read_template_labels(verbose=False)
    gain = fwd_sub["sol"]["data"]
    offsets = {"lh": 0, "rh": len(src_sub[0]["vertno"])}
    expected = np.zeros((gain.shape[0], len(labels)))
    for k, label in enumerate(labels):
        vertno = src_sub[0 if label.hemi == "lh" else 1]["vertno"]
        cols = offsets[label.hemi] + np.searchsorted(vertno, label.vertices)
        expected[:, k] = gain[:, cols].sum(1)
    proj = np.eye(len(info.ch_names)) - 1.0 / len(info.ch_names)
    inv = mne_mmnet.make_mmnet_inverse(info, fwd_sub, None, subjects_dir=tmp_path)
    np.testing.assert_allclose(inv.leadfield, proj @ expected, rtol=1e-6,
                               atol=1e-9 * np.abs(expected).max())  # fmt: skip
    evoked = mne.EvokedArray(1e-8 * gain[:, :4] @ np.eye(4, 8), info)  # 10 nA.m
    evoked.set_eeg_reference("average", projection=True, verbose=False)
    stc = apply_mmnet_inverse(evoked, inv, n_iter=2)
    assert stc.subject == "sub-03" and stc.data.shape == (994, 8)
