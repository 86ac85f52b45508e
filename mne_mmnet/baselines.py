"""Classical inverse solutions wrapped as batch solvers for the benchmark.

Every solver here is a callable ``solver(eeg, *, sfreq) -> sources`` mapping EEG
shaped ``(n_samples, n_channels, n_times)`` to sources shaped ``(n_samples,
n_sources, n_times)``. It is built once per forward model and then applied cheaply
to many samples.
"""

import numpy as np
from mne.utils import _check_option, _validate_type, logger, verbose

from .problem import average_projector

MINIMUM_NORM_METHODS = ("MNE", "dSPM", "sLORETA", "eLORETA")


def _check_fixed_eeg_forward(fwd):
    from mne import Forward
    from mne.io.constants import FIFF

    _validate_type(fwd, Forward, "fwd")
    if fwd["source_ori"] != FIFF.FIFFV_MNE_FIXED_ORI:
        raise ValueError(
            "fwd must have fixed source orientations (one column per source); use "
            "mne.convert_forward_solution(fwd, force_fixed=True, surf_ori=True)."
        )
    kinds = {ch["kind"] for ch in fwd["info"]["chs"]}
    if kinds != {FIFF.FIFFV_EEG_CH}:
        raise ValueError("fwd must contain EEG channels only.")


def _reference_info(fwd, sfreq=1000.0):
    """Measurement info of the forward's channels with an average-reference proj."""
    import mne

    names = list(fwd["info"]["ch_names"])
    info = mne.create_info(names, sfreq, "eeg")
    positions = {ch["ch_name"]: ch["loc"][:3] for ch in fwd["info"]["chs"]}
    info.set_montage(mne.channels.make_dig_montage(positions, coord_frame="head"))
    evoked = mne.EvokedArray(np.zeros((info["nchan"], 1)), info, nave=1)
    evoked.set_eeg_reference(projection=True, verbose=False)
    return evoked.info


class MinimumNormSolver:
    """Linear MNE-family inverse, applied to a batch as one precomputed kernel.

    Build it with :func:`make_minimum_norm_solver`.

    Attributes
    ----------
    method : str
        One of ``"MNE"``, ``"dSPM"``, ``"sLORETA"``, ``"eLORETA"``.
    kernel : ndarray, shape (n_sources, n_channels)
        Imaging kernel including the average-reference projection, the whitening
        and (dSPM, sLORETA) the noise normalisation.
    inverse_operator : mne.minimum_norm.InverseOperator
        The prepared inverse operator the kernel was read from.
    settings : dict
        The options used (for reports).
    """

    def __init__(self, method, kernel, inverse_operator, settings):
        self.method = method
        self.kernel = kernel
        self.inverse_operator = inverse_operator
        self.settings = settings

    def __repr__(self):
        n_src, n_ch = self.kernel.shape
        return (
            f"<MinimumNormSolver | {self.method}, {n_ch} channels -> {n_src} sources>"
        )

    def __call__(self, eeg, *, sfreq=None):
        """Estimate sources from a batch of EEG.

        Parameters
        ----------
        eeg : ndarray, shape (n_samples, n_channels, n_times)
            EEG in the forward's channel order, referenced or not (the average
            reference is part of the kernel).
        sfreq : float | None
            Unused (the solution is the same at every instant); accepted so that
            all benchmark methods share one signature.

        Returns
        -------
        sources : ndarray, shape (n_samples, n_sources, n_times)
            Same floating dtype as ``eeg``.
        """
        eeg = _check_eeg(eeg, self.kernel.shape[1])
        n, n_channels, n_times = eeg.shape
        # one GEMM over all samples and times (a stacked matmul is ~15x slower)
        stacked = eeg.transpose(1, 0, 2).reshape(n_channels, n * n_times)
        out = self.kernel @ stacked.astype(np.float64, copy=False)
        out = out.reshape(-1, n, n_times).transpose(1, 0, 2)
        return np.ascontiguousarray(out, dtype=eeg.dtype)


def _check_eeg(eeg, n_channels):
    if hasattr(eeg, "detach"):
        eeg = eeg.detach().cpu().numpy()
    _validate_type(eeg, np.ndarray, "eeg")
    if eeg.ndim != 3 or eeg.shape[1] != n_channels:
        raise ValueError(
            f"eeg must be shaped (n_samples, {n_channels}, n_times), got {eeg.shape}."
        )
    if not np.issubdtype(eeg.dtype, np.floating):
        eeg = eeg.astype(np.float64)
    return eeg


@verbose
def make_minimum_norm_solver(
    fwd, method="sLORETA", *, snr=3.0, noise_cov=None, depth=0.8, verbose=None
):
    """Build a batch solver for MNE, dSPM, sLORETA or eLORETA.

    Parameters
    ----------
    fwd : mne.Forward
        EEG-only forward with fixed source orientations (e.g.
        :func:`mne_mmnet.read_template_forward`). Its leadfield need not be
        average-referenced: the average-reference projector is added here and
        applied to leadfield and data alike.
    method : str
        ``"MNE"``, ``"dSPM"``, ``"sLORETA"`` or ``"eLORETA"``.
    snr : float
        Assumed amplitude SNR; the regularisation is ``lambda2 = 1 / snr ** 2``
        (MNE's default 3, i.e. ``lambda2 = 1/9``).
    noise_cov : mne.Covariance | None
        Noise covariance. ``None`` uses :func:`mne.make_ad_hoc_cov` (diagonal,
        0.2 uV standard deviation on every EEG channel): the simulations use
        white sensor noise of equal variance on all channels, and the solution
        does not depend on that common scale except through dSPM's unit.
    depth : float | None
        Depth-weighting exponent passed to
        :func:`mne.minimum_norm.make_inverse_operator` (MNE's default 0.8);
        ``None`` disables depth weighting.
    verbose : bool | str | int | None
        Control verbosity of the logging output (see :func:`mne.verbose`).

    Returns
    -------
    solver : MinimumNormSolver
        Callable ``solver(eeg, *, sfreq) -> sources`` on batches.

    Notes
    -----
    The inverse operator is built once with ``fixed=True`` and prepared with
    ``nave=1`` by :func:`mne.minimum_norm.prepare_inverse_operator`; the imaging
    kernel is then read out by :func:`mne.minimum_norm.apply_inverse` applied to
    an identity "evoked" (column ``j`` = response to a unit signal on channel
    ``j``). With fixed orientations every method is linear in the data, so one
    matrix product per batch reproduces ``apply_inverse`` exactly at a fraction of
    its cost.
    """
    import mne
    from mne.minimum_norm import (
        apply_inverse,
        make_inverse_operator,
        prepare_inverse_operator,
    )

    _check_fixed_eeg_forward(fwd)
    _check_option("method", method, MINIMUM_NORM_METHODS)
    _validate_type(snr, "numeric", "snr")
    if not snr > 0:
        raise ValueError(f"snr must be positive, got {snr}.")
    info = _reference_info(fwd)
    cov_kind = "ad-hoc diagonal (mne.make_ad_hoc_cov)" if noise_cov is None else "user"
    if noise_cov is None:
        noise_cov = mne.make_ad_hoc_cov(info, verbose=False)
    _validate_type(noise_cov, mne.Covariance, "noise_cov")
    lambda2 = 1.0 / snr**2
    logger.info(f"Preparing the {method} inverse operator (lambda2 = {lambda2:.4g})")
    # the forward is fixed already: depth weighting from its column norms
    depth_arg = None if depth is None else dict(exp=depth, allow_fixed_depth=True)
    inv = make_inverse_operator(
        info, fwd, noise_cov, loose=0.0, fixed=True, depth=depth_arg, verbose=False
    )
    inv = prepare_inverse_operator(inv, nave=1, lambda2=lambda2, method=method,
                                   verbose=False)  # fmt: skip
    identity = mne.EvokedArray(np.eye(info["nchan"]), info, tmin=0.0, nave=1)
    kernel = apply_inverse(
        identity, inv, lambda2, method, prepared=True, verbose=False
    ).data
    settings = dict(
        method=method,
        snr=float(snr),
        lambda2=lambda2,
        depth=depth,
        fixed=True,
        nave=1,
        noise_cov=cov_kind,
        reference="average (projector)",
    )
    return MinimumNormSolver(method, kernel, inv, settings)


class ClassicalMMSolver:
    """Classical (untrained) MM on the cosine data energy, as a batch solver.

    Build it with :func:`make_classical_mm_solver`.

    Attributes
    ----------
    leadfield : ndarray, shape (n_channels, n_sources)
        Average-referenced leadfield scaled to unit spectral norm.
    settings : dict
        The options used (for reports).
    """

    def __init__(self, leadfield, projector, init_solver, options, settings):
        self.leadfield = leadfield
        self._projector = projector
        self._init_solver = init_solver
        self._options = options
        self.settings = settings

    def __repr__(self):
        n_ch, n_src = self.leadfield.shape
        return (
            f"<ClassicalMMSolver | {self._options.get('n_iter')} iterations, "
            f"{n_ch} channels -> {n_src} sources>"
        )

    def __call__(self, eeg, *, sfreq=None):
        """Estimate sources from a batch of EEG.

        Parameters
        ----------
        eeg : ndarray, shape (n_samples, n_channels, n_times)
            EEG in the forward's channel order (average-referenced here).
        sfreq : float | None
            Unused; accepted so that all benchmark methods share one signature.

        Returns
        -------
        sources : ndarray, shape (n_samples, n_sources, n_times)
            Same floating dtype as ``eeg``.
        """
        from .solver import solve_mm

        eeg = _check_eeg(eeg, self.leadfield.shape[0])
        y = np.matmul(self._projector, eeg.astype(np.float64, copy=False))
        y /= np.maximum(np.linalg.norm(y, axis=(1, 2), keepdims=True), 1e-300)
        options = dict(self._options)
        if self._init_solver is not None:
            x0 = self._init_solver(eeg).astype(np.float64)
            x0 /= np.maximum(np.linalg.norm(x0, axis=(1, 2), keepdims=True), 1e-300)
            options["x0"] = x0
        x = solve_mm(y, self.leadfield, init="random", verbose=False, **options)
        return np.asarray(x, dtype=eeg.dtype)


@verbose
def make_classical_mm_solver(
    fwd,
    *,
    n_iter=10,
    init="sLORETA",
    step="directional",
    gamma=None,
    seed=0,
    device="cpu",
    dtype="float32",
    verbose=None,
):
    """Build the classical MM solver of the cosine data energy (no learned parts).

    Parameters
    ----------
    fwd : mne.Forward
        EEG-only forward with fixed source orientations.
    n_iter : int
        Number of MM iterations (default 10, the paper's unrolled depth).
    init : ``"sLORETA"`` | ``"random"``
        Starting point: the sLORETA estimate (:func:`make_minimum_norm_solver`)
        or the paper's ``1e-3 N(0, 1)`` draw.
    step : ``"directional"`` | ``"diagonal"``
        Step rule of :func:`mne_mmnet.solve_mm`: the diagonal step
        ``x - gamma nu_up g`` or the 1-D MM step along it whose length uses the
        exact curvature along that direction (default; both descend).
    gamma : float | None
        Relaxation in (0, 2); ``None`` takes :func:`mne_mmnet.solve_mm`'s
        default for the step (1.999 diagonal, 1 directional).
    seed : int
        Seed of the random start.
    device : str
        Torch device.
    dtype : ``"float32"`` | ``"float64"``
        Precision of the iterations.
    verbose : bool | str | int | None
        Control verbosity of the logging output (see :func:`mne.verbose`).

    Returns
    -------
    solver : ClassicalMMSolver
        Callable ``solver(eeg, *, sfreq) -> sources`` on batches.

    Notes
    -----
    The energy is the cosine data term alone (``prior=None``), the step bound
    the analytic one of Proposition 1 (``bound="analytic"``), so every iteration
    is guaranteed not to increase the energy. Data and leadfield are
    average-referenced; the leadfield is scaled to unit spectral norm and each
    sample's data to unit Frobenius norm, which leaves the scale-free cosine
    energy unchanged.
    """
    _check_fixed_eeg_forward(fwd)
    _check_option("init", init, ("sLORETA", "random"))
    _validate_type(n_iter, "int", "n_iter")
    leadfield = np.asarray(fwd["sol"]["data"], dtype=np.float64)
    n_channels = leadfield.shape[0]
    projector = average_projector(n_channels)
    leadfield = projector @ leadfield
    leadfield /= np.linalg.norm(leadfield, 2)
    init_solver = None
    if init == "sLORETA":
        init_solver = make_minimum_norm_solver(fwd, "sLORETA", verbose=False)
    options = dict(
        n_iter=n_iter, gamma=gamma, bound="analytic", step=step, seed=seed,
        device=device, dtype=dtype,
    )  # fmt: skip
    settings = dict(options, init=init, prior=None, reference="average")
    logger.info(f"Classical MM: {n_iter} iterations from {init}")
    return ClassicalMMSolver(leadfield, projector, init_solver, options, settings)
