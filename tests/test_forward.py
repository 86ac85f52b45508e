"""Tests for the fsaverage template forward model (mne_mmnet.forward)."""

import socket
import sys
import time

import mne
import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from mne_mmnet.forward import (
    TEMPLATE_CH_NAMES,
    make_fsaverage5_subjects_dir,
    make_template_forward,
    read_template_adjacency,
    read_template_forward,
    read_template_labels,
)
from mne_mmnet.forward import template as template_module

N_HEMI_VERTICES = 10242


def _clear_caches():
    template_module._load_forward.cache_clear()
    template_module._load_regions.cache_clear()
    template_module._checked_data_file.cache_clear()


def _column_correlations(a, b):
    """Per-column Pearson correlation of two leadfields (average reference)."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    a = a / np.linalg.norm(a, axis=0)
    b = b / np.linalg.norm(b, axis=0)
    return np.sum(a * b, axis=0)


def _mesh_tris(hemi_index):
    # the fsaverage5 triangles travel with the forward's source space
    return read_template_forward()["src"][hemi_index]["tris"]


@pytest.fixture(scope="module")
def rebuilt():
    """The template rebuilt from scratch with an ico-3 offline BEM (~30 s)."""
    pytest.importorskip("nilearn")
    from mne_mmnet.forward._build import _make_template

    return _make_template(ico=3)


def test_channel_names():
    montage = mne.channels.make_standard_montage("colin27_1020")
    expected = [ch for ch in montage.ch_names if ch not in ("T3", "T4", "T5", "T6")]
    assert len(montage.ch_names) == 94
    assert isinstance(TEMPLATE_CH_NAMES, tuple)
    assert list(TEMPLATE_CH_NAMES) == expected
    assert read_template_forward()["info"]["ch_names"] == expected


def test_read_template_forward():
    mne.read_forward_solution  # noqa: B018  (lazy import of mne.forward, not ours)
    _clear_caches()
    t0 = time.perf_counter()
    fwd = read_template_forward()
    assert time.perf_counter() - t0 < 0.5  # cold read from disk, measured ~0.03 s
    assert isinstance(fwd, mne.Forward)
    assert mne.forward.is_fixed_orient(fwd)
    assert fwd["surf_ori"]
    assert fwd["nsource"] == 994
    assert fwd["sol"]["data"].shape == (90, 994)
    assert fwd["sol"]["data"].dtype == np.float64
    assert fwd["info"].get_channel_types(unique=True) == ["eeg"]
    assert fwd["src"].kind == "surface"
    assert [s["subject_his_id"] for s in fwd["src"]] == ["fsaverage"] * 2
    for s in fwd["src"]:
        assert s["np"] == N_HEMI_VERTICES
        assert s["nuse"] == 497
        assert np.all(np.diff(s["vertno"]) > 0)
    # a fresh copy each call
    fwd["sol"]["data"][:] = 0.0
    fwd["info"]["bads"] = ["Fp1"]
    again = read_template_forward()
    assert np.abs(again["sol"]["data"]).min() > 0
    assert again["info"]["bads"] == []
    # average-referenced leadfield has full rank minus the reference
    leadfield = again["sol"]["data"]
    assert np.linalg.matrix_rank(leadfield) == 90
    assert np.linalg.matrix_rank(leadfield - leadfield.mean(axis=0)) == 89


def test_labels_and_positions():
    labels = read_template_labels()
    fwd = read_template_forward()
    assert len(labels) == 994
    assert [lab.hemi for lab in labels] == ["lh"] * 497 + ["rh"] * 497
    assert labels[0].name == "region-lh-000"
    assert labels[-1].name == "region-rh-496"
    assert all(lab.subject == "fsaverage" for lab in labels)
    sizes = np.array([len(lab.vertices) for lab in labels])
    # roughly equal sizes: 20,484 vertices / 994 regions = 20.6 on average
    assert sizes.min() >= 8 and sizes.max() <= 40, (sizes.min(), sizes.max())
    mri_to_head = fwd["mri_head_t"]["trans"]
    for hi in range(2):
        hemi_labels = labels[hi * 497 : (hi + 1) * 497]
        # disjoint and covering every vertex
        counts = np.zeros(N_HEMI_VERTICES, int)
        for lab in hemi_labels:
            counts[lab.vertices] += 1
        np.testing.assert_array_equal(counts, 1)
        # each region connected on the mesh
        tris = _mesh_tris(hi)
        edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
        graph = sparse.coo_array(
            (np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
            shape=(N_HEMI_VERTICES,) * 2,
        ).tocsr()
        for lab in hemi_labels:
            sub = graph[lab.vertices][:, lab.vertices]
            assert connected_components(sub, directed=False)[0] == 1, lab.name
        # the representative vertex belongs to its region and is nearest to
        # the region's centroid; forward positions agree with label positions
        vertno = fwd["src"][hi]["vertno"]
        src_pos = fwd["source_rr"][hi * 497 : (hi + 1) * 497]
        for lab, vert, pos in zip(hemi_labels, vertno, src_pos):
            assert vert in lab.vertices
            dist = np.linalg.norm(lab.pos - lab.pos.mean(axis=0), axis=1)
            assert lab.vertices[np.argmin(dist)] == vert
            pos_mri = lab.pos[np.searchsorted(lab.vertices, vert)]
            pos_head = mri_to_head[:3, :3] @ pos_mri + mri_to_head[:3, 3]
            np.testing.assert_allclose(pos, pos_head, atol=1e-6)


def test_adjacency():
    adjacency = read_template_adjacency()
    labels = read_template_labels()
    assert isinstance(adjacency, sparse.csr_array)
    assert adjacency.shape == (994, 994)
    assert adjacency.dtype == bool
    assert (adjacency != adjacency.T).nnz == 0
    assert adjacency.diagonal().sum() == 0
    assert adjacency[:497, 497:].nnz == 0  # hemispheres do not touch
    # independent recomputation from the mesh and the labels
    expected = np.zeros((994, 994), bool)
    for hi in range(2):
        region = np.empty(N_HEMI_VERTICES, int)
        for ri, lab in enumerate(labels[hi * 497 : (hi + 1) * 497]):
            region[lab.vertices] = ri + hi * 497
        for a, b in ((0, 1), (1, 2), (2, 0)):
            tris = _mesh_tris(hi)
            expected[region[tris[:, a]], region[tris[:, b]]] = True
    expected |= expected.T
    np.fill_diagonal(expected, False)
    np.testing.assert_array_equal(adjacency.toarray(), expected)
    degree = expected.sum(axis=1)
    assert degree.min() >= 3 and np.median(degree) == 6  # planar-like tiling


def test_offline_without_nilearn(monkeypatch):
    """Reading the template needs neither the network nor nilearn."""

    def _no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setitem(sys.modules, "nilearn", None)  # import nilearn fails
    with pytest.raises(ImportError):
        import nilearn  # noqa: F401
    _clear_caches()
    fwd = read_template_forward()
    labels = read_template_labels()
    adjacency = read_template_adjacency()
    assert fwd["nsource"] == len(labels) == adjacency.shape[0] == 994


def _ico3(surf):
    """Decimate an ico-5 surface to ico-3 (1,280 triangles) for fast interior checks."""
    from mne.bem import _ico_downsample

    return _ico_downsample(dict(rr=surf["rr"].copy(), tris=surf["tris"]), 3)


def test_registry_detects_corruption(tmp_path, monkeypatch):
    for name in ("registry.txt", "template-fwd.fif", "template-regions.npz"):
        (tmp_path / name).write_bytes((template_module._DATA_DIR / name).read_bytes())
    raw = bytearray((tmp_path / "template-regions.npz").read_bytes())
    raw[-100] ^= 0xFF
    (tmp_path / "template-regions.npz").write_bytes(bytes(raw))
    monkeypatch.setattr(template_module, "_DATA_DIR", tmp_path)
    _clear_caches()
    try:
        assert read_template_forward()["nsource"] == 994  # untouched file reads
        with pytest.raises(RuntimeError, match="sha256"):
            read_template_labels()
    finally:
        _clear_caches()


def test_sources_inside_inner_skull():
    from mne.surface import _CheckInside

    (inner,) = mne.read_bem_surfaces(
        mne.__path__[0] + "/data/fsaverage/fsaverage-inner_skull-bem.fif",
        verbose=False,
    )
    # ico-3 keeps the check fast; its flat faces cut slightly inside the
    # convex original, so this is (mostly) stricter than the full surface
    check = _CheckInside(_ico3(inner))
    positions = np.concatenate([lab.pos for lab in read_template_labels()])
    assert len(positions) == 2 * N_HEMI_VERTICES
    assert check(positions, verbose=False).all()


def test_offline_bem_layers_nest():
    from mne.surface import _CheckInside

    from mne_mmnet.forward._bem import _make_offline_bem_surfaces

    surfaces = _make_offline_bem_surfaces()
    names = ("inner_skull", "outer_skull", "outer_skin")
    surfs = {n: _ico3(dict(rr=surfaces[n][0], tris=surfaces[n][1])) for n in names}
    for inner, outer in ((names[0], names[1]), (names[1], names[2])):
        check = _CheckInside(surfs[outer])
        assert check(surfs[inner]["rr"], verbose=False).all(), (inner, outer)
        assert not _CheckInside(surfs[inner])(surfs[outer]["rr"], verbose=False).any()
    skull = np.linalg.norm(
        surfaces["outer_skull"][0] - surfaces["inner_skull"][0], axis=1
    )
    assert 2e-3 < skull.min() and skull.max() <= 6e-3 + 1e-9


def test_rebuild_matches_shipped(rebuilt):
    """The shipped (ico-4) template equals an ico-3 rebuild up to BEM resolution."""
    assert rebuilt["route"] == "offline"
    shipped = read_template_forward()
    fwd = rebuilt["forward"]
    assert fwd["info"]["ch_names"] == shipped["info"]["ch_names"]
    for new, old in zip(fwd["src"], shipped["src"]):
        np.testing.assert_array_equal(new["vertno"], old["vertno"])
    corr = _column_correlations(fwd["sol"]["data"], shipped["sol"]["data"])
    # measured: median 0.99954, minimum 0.99654
    assert np.median(corr) > 0.999
    assert corr.min() >= 0.99
    # the parcellation is seeded: identical to the shipped one
    shipped_regions = template_module._load_regions()
    for key, value in rebuilt["regions"].items():
        np.testing.assert_array_equal(value, shipped_regions[key], err_msg=key)
    # region column = sum of the vertex columns (checked on the rebuild)
    full = rebuilt["full"]["sol"]["data"]
    region_lh = rebuilt["regions"]["vertex_region_lh"]
    np.testing.assert_allclose(
        fwd["sol"]["data"][:, 5],
        full[:, :N_HEMI_VERTICES][:, region_lh == 5].sum(1, dtype=np.float64),
        rtol=1e-10,
    )


def test_against_sphere_model(rebuilt):
    """Topographies agree with an independent 3-shell spherical head model."""
    full = rebuilt["full"]
    info = mne.create_info(list(TEMPLATE_CH_NAMES), 1000.0, "eeg")
    info.set_montage("colin27_1020")
    # sphere fitted to the electrodes (R = 99 mm); the brain shell at 0.90 R
    # (89 mm) holds every white-surface vertex (farthest: 87 mm from the centre)
    sphere = mne.make_sphere_model(
        "auto", "auto", info, relative_radii=(0.90, 0.96, 1.0),
        sigmas=(0.3, 0.006, 0.3), verbose=False,
    )  # fmt: skip
    # vertex-level sphere forward at the same positions and normals, summed per
    # region exactly like the BEM template. The source space is already in head
    # coordinates, so pass an identity head<->MRI transform: with a non-identity
    # trans, mne 1.13 checks head-frame sphere shells against MRI-frame source
    # positions and drops ~3,500 deep-inside sources.
    identity = mne.transforms.Transform("mri", "head")
    fwd_sphere = mne.make_forward_solution(
        info, trans=identity, src=full["src"], bem=sphere, eeg=True, meg=False,
        mindist=0.0, verbose=False,
    )  # fmt: skip
    fwd_sphere = mne.convert_forward_solution(
        fwd_sphere, surf_ori=True, force_fixed=True, verbose=False
    )
    assert fwd_sphere["nsource"] == 2 * N_HEMI_VERTICES
    region = np.r_[
        rebuilt["regions"]["vertex_region_lh"],
        rebuilt["regions"]["vertex_region_rh"] + 497,
    ]
    membership = sparse.csr_array(
        (np.ones(len(region)), (np.arange(len(region)), region)),
        shape=(len(region), 994),
    )
    leadfield_sphere = np.asarray(fwd_sphere["sol"]["data"] @ membership)
    corr = _column_correlations(
        leadfield_sphere, read_template_forward()["sol"]["data"]
    )
    # measured: median 0.984, 5th percentile 0.961, minimum 0.803
    assert np.median(corr) >= 0.95
    assert np.percentile(corr, 5) >= 0.9
    assert corr.min() >= 0.7


def test_real_fsaverage_route(rebuilt, tmp_path):
    """A subjects_dir with the real fsaverage BEM solution is used when present."""
    bem_dir = tmp_path / "fsaverage" / "bem"
    bem_dir.mkdir(parents=True)
    mne.write_bem_solution(
        bem_dir / "fsaverage-5120-5120-5120-bem-sol.fif", rebuilt["bem"], verbose=False
    )
    fwd = make_template_forward(subjects_dir=tmp_path)
    # the BEM solution goes through a float32 file: equal to float32 precision
    expected = rebuilt["forward"]["sol"]["data"]
    np.testing.assert_allclose(
        fwd["sol"]["data"], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max()
    )


def test_make_template_forward_validation():
    with pytest.raises(ValueError, match="ico must be"):
        make_template_forward(ico=2)
    with pytest.raises(TypeError, match="ico"):
        make_template_forward(ico=4.0)
    with pytest.raises(TypeError, match="subjects_dir"):
        make_template_forward(subjects_dir=3)


def test_make_fsaverage5_subjects_dir(tmp_path):
    pytest.importorskip("nilearn")
    import nibabel.freesurfer as nfs

    out = make_fsaverage5_subjects_dir(tmp_path)
    assert out == tmp_path.resolve()
    surf = tmp_path / "fsaverage" / "surf"
    for hemi in ("lh", "rh"):
        for kind in ("white", "pial", "inflated", "sphere", "sphere.reg"):
            rr, tris = nfs.read_geometry(surf / f"{hemi}.{kind}")
            assert rr.shape == (N_HEMI_VERTICES, 3)
            assert tris.shape == (20480, 3)
        curv = nfs.read_morph_data(surf / f"{hemi}.curv")
        assert curv.shape == (N_HEMI_VERTICES,)
    # the written white surface is the template's source space (metres vs mm)
    rr, _ = nfs.read_geometry(surf / "lh.white")
    labels = read_template_labels()
    np.testing.assert_allclose(rr[labels[0].vertices] * 1e-3, labels[0].pos, atol=1e-6)
    assert (tmp_path / "fsaverage" / "bem" / "fsaverage-head.fif").is_file()
    # a second call reuses the complete subject; a foreign folder is refused
    stamp = (surf / "lh.white").stat().st_mtime_ns
    assert make_fsaverage5_subjects_dir(tmp_path) == tmp_path.resolve()
    assert (surf / "lh.white").stat().st_mtime_ns == stamp
    (surf / "lh.sulc").unlink()
    with pytest.raises(FileExistsError, match="overwrite"):
        make_fsaverage5_subjects_dir(tmp_path)
    make_fsaverage5_subjects_dir(tmp_path, overwrite=True)
    assert (surf / "lh.sulc").is_file()


def test_parcellation_is_seeded():
    pytest.importorskip("nilearn")
    from mne_mmnet.forward.parcellation import _parcellate_sphere
    from mne_mmnet.forward.surfaces import _read_fsaverage5_mesh

    rr, tris = _read_fsaverage5_mesh("sphere", "lh")
    a = _parcellate_sphere(rr, tris, 50, seed=1, n_refine=2)
    b = _parcellate_sphere(rr, tris, 50, seed=1, n_refine=2)
    c = _parcellate_sphere(rr, tris, 50, seed=2, n_refine=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(np.unique(a), np.arange(50))
