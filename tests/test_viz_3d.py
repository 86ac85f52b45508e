"""3-D brain plots render off screen, with no display, and paint the right place."""

import sys

import mne
import numpy as np
import pytest

import mne_mmnet
from mne_mmnet.viz_3d import plot_source_estimate

pyvista = pytest.importorskip("pyvista")

# one small view of the left hemisphere; no colour bar or time label, so that
# every saturated pixel in a screenshot comes from the painted data
PLOT_KWARGS = dict(
    hemi="lh",
    views="lateral",
    size=(300, 300),
    background="white",
    colorbar=False,
    time_label=None,
    clim=dict(kind="value", lims=[0.05, 0.1, 2.0]),  # 1.0 -> opaque orange
)


def _hot_pixels(image):
    """Red-to-yellow pixels: the 'hot' colour map, never the grey cortex."""
    rgb = image[..., :3].astype(int)
    return (rgb[..., 0] > 180) & (rgb[..., 0] - rgb[..., 2] > 100)


def _graded_fraction(image):
    """Share of hot pixels that are red/orange rather than the patch's yellow.

    A painted region has one value, so one hue (shading changes brightness,
    not the green-to-red ratio); MNE's smoothing of the region centres alone
    fades to red at the edge.
    """
    rgb = image[_hot_pixels(image)].astype(float)
    return np.mean(rgb[:, 1] / rgb[:, 0] < 0.75)


def _cortex_is_drawn(image):
    """Not one flat colour, and a good part of it is the grey cortex."""
    rgb = image[..., :3].astype(int)
    grey = (np.ptp(rgb, axis=-1) < 20) & (rgb.mean(axis=-1) > 40)
    grey &= rgb.mean(axis=-1) < 230
    return rgb.std() > 10 and grey.mean() > 0.2


def _render(stc, *, offscreen=True, **kwargs):
    brain = plot_source_estimate(stc, offscreen=offscreen, verbose=False, **kwargs)
    try:
        assert isinstance(brain, mne.viz.Brain)
        return brain.screenshot()
    finally:
        brain.close()


@pytest.fixture(scope="module")
def subjects_dir(tmp_path_factory):
    return mne_mmnet.make_fsaverage5_subjects_dir(
        tmp_path_factory.mktemp("subjects"), verbose=False
    )


@pytest.fixture(scope="module")
def template():
    """Region-level estimates: an anterior and a posterior lateral lh patch."""
    fwd = mne_mmnet.read_template_forward(verbose=False)
    vertices = [src["vertno"] for src in fwd["src"]]
    adjacency = mne_mmnet.read_template_adjacency()
    pos = fwd["source_rr"][: len(vertices[0])]  # lh regions come first
    lateral = np.flatnonzero(pos[:, 0] < np.percentile(pos[:, 0], 15))

    def patch_stc(centre):
        patch = np.zeros(adjacency.shape[0], bool)
        patch[centre] = True
        for _ in range(2):  # the centre and two rings of neighbours
            patch |= adjacency @ patch
        data = patch[:, np.newaxis].astype(float)
        return mne.SourceEstimate(data, vertices, 0.0, 0.01, subject="fsaverage")

    front = patch_stc(lateral[np.argmax(pos[lateral, 1])])
    back = patch_stc(lateral[np.argmin(pos[lateral, 1])])
    return front, back


def test_region_patch_is_painted_where_it_is(subjects_dir, template):
    """A patch shows in hot colours, the front one left of the back one."""
    front, back = template
    backend, offscreen_flag = mne.viz.get_3d_backend(), pyvista.OFF_SCREEN
    images = [
        _render(stc, subjects_dir=subjects_dir, **PLOT_KWARGS)
        for stc in (front, back, front * 0)
    ]
    smoothed = _render(front, subjects_dir=subjects_dir, expand=False, **PLOT_KWARGS)
    # the global 3-D backend and pyvista's flag are left as they were
    assert mne.viz.get_3d_backend() == backend
    assert pyvista.OFF_SCREEN == offscreen_flag
    for image in images:
        assert image.ndim == 3 and image.shape[2] == 3
        assert _cortex_is_drawn(image)
    hot = [_hot_pixels(image) for image in images]
    assert hot[0].mean() > 0.01 and hot[1].mean() > 0.01
    assert hot[2].sum() == 0  # nothing painted without data
    # lateral view of the left hemisphere: anterior is on the left of the image
    column_front = np.nonzero(hot[0])[1].mean()
    column_back = np.nonzero(hot[1])[1].mean()
    assert column_front < images[0].shape[1] / 2 < column_back
    assert (hot[0] & hot[1]).sum() < 0.1 * min(hot[0].sum(), hot[1].sum())
    # expand=True paints whole regions in one colour; expand=False lets MNE
    # smooth the region centres, with a graded rim, around the same place
    assert _graded_fraction(images[0]) < 0.02 and _graded_fraction(images[1]) < 0.02
    assert _graded_fraction(smoothed) > 0.1
    assert abs(np.nonzero(_hot_pixels(smoothed))[1].mean() - column_front) < 30


def test_same_as_plain_stc_plot(subjects_dir, template, monkeypatch):
    """The documented recipe with MNE alone gives the same image."""
    front, _ = template
    ours = _render(front, subjects_dir=subjects_dir, **PLOT_KWARGS)
    stc_vertices = mne_mmnet.expand_to_vertices(front)
    monkeypatch.setattr(pyvista, "OFF_SCREEN", True)
    with mne.viz.use_3d_backend("notebook"):
        brain = stc_vertices.plot(
            subject="fsaverage",
            subjects_dir=subjects_dir,
            surface="inflated",
            time_viewer=False,
            brain_kwargs=dict(show=False),
            verbose=False,
            **PLOT_KWARGS,
        )
        plain = brain.screenshot()
        brain.close()
    assert plain.shape == ours.shape
    assert _hot_pixels(plain).sum() > 0.01 * plain[..., 0].size
    assert np.abs(plain.astype(int) - ours.astype(int)).mean() < 1.0


def test_vertex_level_estimate(subjects_dir, monkeypatch):
    """A vertex-level stc is plotted as given: anterior half painted."""
    # no display and no Jupyter kernel: offscreen=None must choose off screen
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    offscreen = None if sys.platform.startswith("linux") else True
    rr, _ = mne.read_surface(subjects_dir / "fsaverage" / "surf" / "lh.white")
    n_vertices = len(rr)
    data = np.zeros((2 * n_vertices, 1))
    data[:n_vertices, 0] = rr[:, 1] > 0  # anterior lh vertices
    vertices = [np.arange(n_vertices), np.arange(n_vertices)]
    stc = mne.SourceEstimate(data, vertices, 0.0, 0.01, subject="fsaverage")
    image = _render(
        stc, subjects_dir=subjects_dir, expand=True, offscreen=offscreen, **PLOT_KWARGS
    )
    hot = _hot_pixels(image)
    assert _cortex_is_drawn(image)
    assert hot.mean() > 0.05
    left, right = np.array_split(hot, 2, axis=1)
    assert left.sum() > 3 * right.sum()


def test_jupyter_is_a_running_kernel_not_an_import(monkeypatch):
    """Importing ipykernel in a script is not Jupyter; a shell with a kernel is."""
    import types

    from mne_mmnet.viz_3d import _in_jupyter

    pytest.importorskip("ipykernel")
    import ipykernel  # noqa: F401  (imported, as some libraries do)

    assert not _in_jupyter()
    shell = types.SimpleNamespace(kernel=object())
    fake = types.SimpleNamespace(get_ipython=lambda: shell)
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert _in_jupyter()
    shell.kernel = None  # a terminal IPython has no kernel
    assert not _in_jupyter()


def test_default_subjects_dir_is_built_once(template, tmp_path, monkeypatch):
    """Without subjects_dir, a template subject is made under MNE_DATA once."""
    from mne_mmnet.viz_3d import _cached_subjects_dir

    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    image = _render(template[0], **PLOT_KWARGS)
    assert _hot_pixels(image).mean() > 0.01
    surf = tmp_path / "mne_mmnet_fsaverage5" / "fsaverage" / "surf" / "lh.inflated"
    assert surf.is_file()
    stamp = surf.stat().st_mtime_ns
    assert _cached_subjects_dir() == tmp_path / "mne_mmnet_fsaverage5"
    assert surf.stat().st_mtime_ns == stamp  # reused, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mne_mmnet_fsaverage5"]


def test_invalid_input(subjects_dir, template):
    front, _ = template
    with pytest.raises(TypeError, match="mne.SourceEstimate"):
        plot_source_estimate(front.data, subjects_dir=subjects_dir)
    with pytest.raises(TypeError, match="no subject argument"):
        plot_source_estimate(front, subjects_dir=subjects_dir, subject="sample")
    other = front.copy()
    other.subject = "sample"
    with pytest.raises(ValueError, match="'sample'"):
        plot_source_estimate(other, subjects_dir=subjects_dir)
    ico6 = mne.SourceEstimate(
        np.ones((4, 1)), [np.array([0, 40961]), np.array([1, 2])], 0.0, 0.01
    )
    with pytest.raises(ValueError, match="vertex 40961"):
        plot_source_estimate(ico6, subjects_dir=subjects_dir)
    with pytest.raises(ValueError, match="time viewer"):
        plot_source_estimate(
            front, subjects_dir=subjects_dir, offscreen=True, time_viewer=True
        )


@pytest.mark.parametrize("module", ["pyvista", "pyvistaqt", "ipyevents"])
def test_missing_dependency_names_the_extra(template, module, monkeypatch, tmp_path):
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    monkeypatch.setitem(sys.modules, module, None)  # importing it now fails
    with pytest.raises(ImportError, match=rf"{module}.*pip install mne-mmnet\[viz\]"):
        plot_source_estimate(template[0], offscreen=True)
    # checked before the (slow) template subject is built under MNE_DATA
    assert not any(tmp_path.iterdir())


def test_plain_stc_plot_finds_the_template(template, tmp_path, monkeypatch):
    """template_subjects_dir(set_env=True): MNE's stc.plot() needs no argument."""
    monkeypatch.setenv("MNE_DATA", str(tmp_path))
    monkeypatch.delenv("SUBJECTS_DIR", raising=False)
    monkeypatch.setenv("_MNE_FAKE_HOME_DIR", str(tmp_path))  # no user config
    with pytest.raises(Exception, match="SUBJECTS_DIR"):
        mne.utils.get_subjects_dir(raise_error=True)
    subjects_dir = mne_mmnet.template_subjects_dir(set_env=True, verbose=False)
    assert subjects_dir == tmp_path / "mne_mmnet_fsaverage5"
    assert mne.utils.get_subjects_dir(raise_error=True) == subjects_dir
    monkeypatch.setattr(pyvista, "OFF_SCREEN", True)
    kwargs = {k: v for k, v in PLOT_KWARGS.items() if k != "size"}
    with mne.viz.use_3d_backend("notebook"):
        brain = mne_mmnet.expand_to_vertices(template[0]).plot(
            time_viewer=False, brain_kwargs=dict(show=False), size=(300, 300),
            verbose=False, **kwargs,
        )  # fmt: skip
        image = brain.screenshot()
        brain.close()
    assert _hot_pixels(image).mean() > 0.01
    # an existing SUBJECTS_DIR is left alone
    monkeypatch.setenv("SUBJECTS_DIR", str(tmp_path / "elsewhere"))
    mne_mmnet.template_subjects_dir(set_env=True, verbose=False)
    assert mne.utils.get_config("SUBJECTS_DIR") == str(tmp_path / "elsewhere")
