"""3-D cortical maps of source estimates on the offline fsaverage5 template."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
from mne import SourceEstimate
from mne.utils import _validate_type, get_config, logger, verbose

_SUBJECT = "fsaverage"
_N_FSAVERAGE5 = 10242
_CACHE_NAME = "mne_mmnet_fsaverage5"
_INSTALL_HINT = "install the plotting extras with `pip install mne-mmnet[viz]`"


@verbose
def plot_source_estimate(
    stc,
    *,
    subjects_dir=None,
    expand=True,
    surface="inflated",
    hemi="split",
    views="lateral",
    offscreen=None,
    verbose=None,
    **kwargs,
):
    """Plot a source estimate on the fsaverage5 template cortex in 3-D.

    A thin layer over :meth:`mne.SourceEstimate.plot` that needs no network
    and no display: it supplies an ``fsaverage`` subject built from the
    fsaverage5 meshes shipped by nilearn, paints template-region values onto
    their vertices, and renders off screen when no display is available.

    Parameters
    ----------
    stc : mne.SourceEstimate
        A region-level estimate on the 994 template regions (as returned by
        :func:`mne_mmnet.apply_mmnet_inverse`) or a vertex-level estimate on
        fsaverage5 (vertex numbers below 10,242 in each hemisphere). Its
        ``subject`` must be ``"fsaverage"`` or None.
    subjects_dir : path-like | None
        A FreeSurfer subjects folder holding ``fsaverage``, e.g. made by
        :func:`mne_mmnet.make_fsaverage5_subjects_dir`. None (default) uses
        ``<MNE_DATA>/mne_mmnet_fsaverage5``, created on first use, where
        ``MNE_DATA`` is MNE's config value (``~/mne_data`` when unset).
    expand : bool
        If True (default), a region-level ``stc`` is painted onto every
        vertex of its region with :func:`mne_mmnet.expand_to_vertices`, so
        regions show as patches. If False, only the representative vertex of
        each region carries data and MNE smooths it over the surface
        (``smoothing_steps``). A vertex-level ``stc`` is plotted as given.
    surface : str
        Which surface to draw: ``"inflated"`` (default), ``"white"`` or
        ``"pial"``.
    hemi : str
        ``"split"`` (default), ``"both"``, ``"lh"`` or ``"rh"``, as in
        :meth:`mne.SourceEstimate.plot`.
    views : str | list of str
        View(s) of each hemisphere (default ``"lateral"``), as in
        :meth:`mne.SourceEstimate.plot`.
    offscreen : bool | None
        If True, draw into an off-screen buffer (no window; read the image
        with :meth:`mne.viz.Brain.screenshot` or
        :meth:`mne.viz.Brain.save_image`); in a Jupyter kernel the image is
        also shown in the cell's output. None (default) draws off screen
        when there is no display (Linux without ``DISPLAY`` or
        ``WAYLAND_DISPLAY``) or the call comes from a Jupyter kernel. If
        False, the current MNE 3-D backend (see
        :func:`mne.viz.set_3d_backend`) shows the figure as usual, e.g. an
        interactive window, or in Jupyter MNE's ``"notebook"`` widget (which
        needs the trame packages).
    %(verbose)s
    **kwargs
        Further arguments of :meth:`mne.SourceEstimate.plot` (``clim``,
        ``colormap``, ``time_viewer``, ``size``, ``initial_time``,
        ``brain_kwargs``...), except ``subject`` and ``subjects_dir``. By
        default ``initial_time`` is the time of the largest ``|stc|`` and a
        split view is 1000 x 450 pixels.

    Returns
    -------
    brain : mne.viz.Brain
        The figure. Close it with :meth:`mne.viz.Brain.close` when done.

    Raises
    ------
    TypeError
        If ``stc`` is not an :class:`mne.SourceEstimate`, an argument has
        the wrong type, or ``subject`` is passed in ``kwargs``.
    ValueError
        If ``stc`` is not on fsaverage5 (another subject, or vertex numbers
        beyond 10,241), or ``time_viewer=True`` is asked for off screen.
    ImportError
        If pyvista is not installed or, off screen, pyvistaqt with a Qt
        binding, ipywidgets or ipyevents (MNE's ``"notebook"`` backend imports
        them all, although it opens no Qt window).

    Notes
    -----
    Off screen, the figure is built with MNE's ``"notebook"`` 3-D backend and
    ``pyvista.OFF_SCREEN`` set for the duration of the call (the previous
    backend and flag are restored afterwards); this backend opens no Qt
    window and needs no X server: VTK falls back to EGL (Mesa) or OSMesa. On
    a machine without X, setting the environment variable
    ``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow`` before the first plot
    skips VTK's attempt to reach an X server (and its warning). The
    interactive time viewer is not available off screen. In Jupyter the
    default is a static image of the figure (it works headless, e.g. on a
    remote server); for the interactive widget select the notebook backend
    (``mne.viz.set_3d_backend("notebook")``, with the trame packages) and
    pass ``offscreen=False``.

    The same figures can be made with MNE alone, e.g. in a notebook or a
    desktop session::

        subjects_dir = mne_mmnet.make_fsaverage5_subjects_dir("~/fsaverage5")
        stc_vertices = mne_mmnet.expand_to_vertices(stc)
        brain = stc_vertices.plot(
            subject="fsaverage", subjects_dir=subjects_dir, surface="inflated"
        )

    and off screen by calling ``mne.viz.set_3d_backend("notebook")`` and
    setting ``pyvista.OFF_SCREEN = True`` first, then passing
    ``time_viewer=False, brain_kwargs=dict(show=False)`` to ``plot``.
    """
    _validate_type(stc, SourceEstimate, "stc", "mne.SourceEstimate")
    _validate_type(expand, bool, "expand")
    _validate_type(offscreen, (bool, None), "offscreen")
    if "subject" in kwargs:
        raise TypeError(
            "plot_source_estimate() plots on the fsaverage template and takes no "
            f"subject argument, got subject={kwargs['subject']!r}; use "
            "stc.plot() directly for another subject."
        )
    if stc.subject not in (None, _SUBJECT):
        raise ValueError(
            f"stc must be on the {_SUBJECT!r} template, got subject "
            f"{stc.subject!r}; morph it first (mne.compute_source_morph)."
        )
    stc = _to_template_vertices(stc, expand=expand)
    _check_import("pyvista")
    in_jupyter = _in_jupyter()
    if offscreen is None:
        offscreen = not _has_display() or in_jupyter
    if offscreen and kwargs.get("time_viewer", False) not in (False, "auto"):
        raise ValueError(
            "The interactive time viewer needs a window; got time_viewer="
            f"{kwargs['time_viewer']!r} with offscreen=True. Pass "
            "time_viewer=False, or offscreen=False on a machine with a display."
        )
    if offscreen:
        # MNE's notebook backend imports pyvistaqt (hence a Qt binding) too;
        # check before building the template subject, which is slow
        for name in ("pyvistaqt", "ipywidgets", "ipyevents"):
            _check_import(name)
    if subjects_dir is None:
        subjects_dir = _cached_subjects_dir()
    else:
        _validate_type(subjects_dir, "path-like", "subjects_dir")
        subjects_dir = Path(subjects_dir).expanduser()
    # the time of the largest activity, not the first sample (often an empty
    # pre-stimulus brain); a wide canvas so that split views show both
    # hemispheres whole
    kwargs.setdefault(
        "initial_time", float(stc.times[np.abs(stc.data).max(0).argmax()])
    )
    if hemi == "split":
        kwargs.setdefault("size", (1000, 450))
    plot_kwargs = dict(
        subject=_SUBJECT,
        subjects_dir=subjects_dir,
        surface=surface,
        hemi=hemi,
        views=views,
        **kwargs,
    )
    logger.info(
        f"Plotting {stc.data.shape[0]} vertices x {stc.data.shape[1]} times on "
        f"{subjects_dir / _SUBJECT} ({'off screen' if offscreen else 'on screen'})"
    )
    if not offscreen:
        return stc.plot(**plot_kwargs)
    brain = _plot_offscreen(stc, plot_kwargs)
    if in_jupyter:
        _show_in_cell(brain)
    return brain


def _show_in_cell(brain):
    """Show an off-screen figure as a PNG in the running Jupyter cell."""
    import io

    from IPython.display import Image, display
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    imsave(buffer, brain.screenshot(), format="png")
    display(Image(data=buffer.getvalue()))


def _to_template_vertices(stc, *, expand):
    """Expand a region-level stc when asked; check a vertex-level one."""
    from .inverse import expand_to_vertices
    from .inverse._prepare import _template_vertices

    if len(stc.vertices) != 2:
        raise ValueError(
            "stc must be a surface estimate with two hemispheres on fsaverage5, "
            f"got {len(stc.vertices)} vertex arrays."
        )
    on_regions = all(
        np.array_equal(v, t) for v, t in zip(stc.vertices, _template_vertices())
    )
    if on_regions and expand:
        logger.info("    Painting the template-region values onto their vertices")
        return expand_to_vertices(stc)
    for hemi, vertno in zip(("lh", "rh"), stc.vertices):
        if len(vertno) and vertno.max() >= _N_FSAVERAGE5:
            raise ValueError(
                f"stc must be on fsaverage5 (vertex numbers below {_N_FSAVERAGE5}),"
                f" got {hemi} vertex {int(vertno.max())}; morph it to the ico-5 "
                "template first (mne.compute_source_morph with spacing=5)."
            )
    return stc


def _plot_offscreen(stc, plot_kwargs):
    """Build the Brain off screen with MNE's notebook backend (no window)."""
    import mne
    import pyvista

    brain_kwargs = dict(plot_kwargs.get("brain_kwargs") or {})
    brain_kwargs["show"] = False
    plot_kwargs.update(time_viewer=False, brain_kwargs=brain_kwargs)
    # resolve the default backend first, so that use_3d_backend restores it
    mne.viz.get_3d_backend()
    previous_flag = pyvista.OFF_SCREEN
    pyvista.OFF_SCREEN = True
    try:
        with mne.viz.use_3d_backend("notebook"):
            return stc.plot(**plot_kwargs)
    finally:
        pyvista.OFF_SCREEN = previous_flag


def _in_jupyter():
    """Whether this code runs in a Jupyter kernel (not only with ipykernel imported)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _has_display():
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _check_import(name):
    try:
        __import__(name)
    except ImportError as exc:
        raise ImportError(
            f"3-D source plots need {name}, which could not be imported ({exc}); "
            f"{_INSTALL_HINT}."
        ) from exc


@verbose
def template_subjects_dir(*, set_env=False, verbose=None):
    """Return a subjects folder holding the ``fsaverage`` template, built once.

    The folder is ``<MNE_DATA>/mne_mmnet_fsaverage5`` (``MNE_DATA`` is MNE's
    config value, ``~/mne_data`` when unset); it is created from the
    fsaverage5 meshes shipped by nilearn on first use and reused afterwards.

    Parameters
    ----------
    set_env : bool
        If True and the ``SUBJECTS_DIR`` environment variable is unset, set
        it to this folder for the running process (nothing is written to
        MNE's config file), so that MNE's own ``stc.plot()`` finds the
        template without a ``subjects_dir`` argument. An existing
        ``SUBJECTS_DIR`` is never replaced.
    %(verbose)s

    Returns
    -------
    subjects_dir : pathlib.Path
        The folder; ``subjects_dir / "fsaverage"`` is the template subject.

    Notes
    -----
    The estimates of :func:`mne_mmnet.apply_mmnet_inverse` use vertex
    numbers of fsaverage5, which are the first vertices of every finer
    fsaverage; a full FreeSurfer ``fsaverage`` in ``SUBJECTS_DIR`` plots
    them at the same places.

    Examples
    --------
    >>> subjects_dir = mne_mmnet.template_subjects_dir()  # doctest: +SKIP
    >>> stc.plot(subjects_dir=subjects_dir, initial_time=0.1)  # doctest: +SKIP
    """
    _validate_type(set_env, bool, "set_env")
    subjects_dir = _cached_subjects_dir()
    if set_env:
        current = os.environ.get("SUBJECTS_DIR")
        if current is None:
            os.environ["SUBJECTS_DIR"] = str(subjects_dir)
            logger.info(f"SUBJECTS_DIR set to {subjects_dir} for this process")
        elif Path(current).expanduser() != subjects_dir:
            logger.info(f"SUBJECTS_DIR is already set ({current}); left as it is")
    return subjects_dir


def _cached_subjects_dir():
    """Return ``<MNE_DATA>/mne_mmnet_fsaverage5``, building it on first use.

    The subject is written to a private temporary folder and renamed into
    place, so a half-written folder is never used (also with parallel calls).
    """
    from .forward import make_fsaverage5_subjects_dir

    base = Path(get_config("MNE_DATA", os.path.join("~", "mne_data"))).expanduser()
    subjects_dir = base / _CACHE_NAME
    if (subjects_dir / _SUBJECT).is_dir():
        # folders built by versions before the empty mri folder (scale_mri)
        (subjects_dir / _SUBJECT / "mri").mkdir(exist_ok=True)
        return subjects_dir
    logger.info(f"Creating the fsaverage5 template subject in {subjects_dir}")
    base.mkdir(parents=True, exist_ok=True)
    partial = base / f".{_CACHE_NAME}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        make_fsaverage5_subjects_dir(partial, overwrite=True, verbose=False)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        partial.rename(subjects_dir)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
        if not (subjects_dir / _SUBJECT).is_dir():
            raise
    return subjects_dir
