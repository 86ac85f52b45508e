"""Jansen-Rit neural mass columns, integrated with the stochastic Heun scheme."""

import numpy as np
from mne.utils import _check_option, _validate_type, logger, verbose
from scipy.special import expit

from ..utils import _get_device, _get_dtype, _torch_generator
from .noise import _check_rng

# Jansen & Rit (1995) standard column
_JR_DEFAULTS = dict(A=3.25, B=22.0, a=100.0, b=50.0, C=135.0, v0=6.0, e0=2.5, r=0.56)


class _NumpyOps:
    def __init__(self, seed, dtype):
        self.rng = _check_rng(seed)
        self.dtype = np.dtype(dtype)

    def asarray(self, value, n):
        return np.broadcast_to(np.asarray(value, self.dtype), (n,)).copy()

    def zeros(self, shape):
        return np.zeros(shape, self.dtype)

    def randn(self, n):
        return self.rng.standard_normal(n, dtype=self.dtype)

    sigmoid = staticmethod(expit)

    @staticmethod
    def to_numpy(x):
        return x


class _TorchOps:
    def __init__(self, seed, dtype, device):
        import torch  # only the torch backend needs it

        self.torch = torch
        self.device = _get_device(device)
        self.dtype = _get_dtype(dtype)
        self.gen = _torch_generator(seed, self.device)

    def asarray(self, value, n):
        value = self.torch.as_tensor(np.asarray(value), dtype=self.dtype)
        return value.to(self.device).broadcast_to((n,)).clone()

    def zeros(self, shape):
        return self.torch.zeros(shape, dtype=self.dtype, device=self.device)

    def randn(self, n):
        return self.torch.randn(
            n, generator=self.gen, dtype=self.dtype, device=self.device
        )

    def sigmoid(self, x):
        return self.torch.sigmoid(x)

    @staticmethod
    def to_numpy(x):
        return x.cpu().numpy()


def _jr_constants(A, p, sigma, params, dt, ops, n_columns):
    """Fold the Jansen-Rit constants into per-column gains (fewer operations)."""
    A = ops.asarray(A, n_columns)
    a, b, C, e0, r = (params[k] for k in ("a", "b", "C", "e0", "r"))
    return dict(
        pyramidal=A * (a * 2.0 * e0),  # A a S(.) with S = 2 e0 sigmoid
        excitatory=A * (a * 0.8 * C * 2.0 * e0),  # C2 = 0.8 C
        drive=A * a * ops.asarray(p, n_columns),
        noise=A * (a * np.sqrt(dt)) * ops.asarray(sigma, n_columns),
        inhibitory=params["B"] * b * 0.25 * C * 2.0 * e0,  # C4 = 0.25 C
        r=r,
        r_v0=r * params["v0"],
        r_c1=r * C,  # C1 = C
        r_c3=r * 0.25 * C,  # C3 = 0.25 C
        two_a=2.0 * a,
        a2=a * a,
        two_b=2.0 * b,
        b2=b * b,
    )


def _jr_drift(state, k, ops):
    """Right-hand side of the Jansen-Rit equations (without the noise)."""
    y0, y1, y2, y3, y4, y5 = state
    fire_pyr = ops.sigmoid(k["r"] * (y1 - y2) - k["r_v0"])
    fire_exc = ops.sigmoid(k["r_c1"] * y0 - k["r_v0"])
    fire_inh = ops.sigmoid(k["r_c3"] * y0 - k["r_v0"])
    return (
        y3,
        y4,
        y5,
        k["pyramidal"] * fire_pyr - k["two_a"] * y3 - k["a2"] * y0,
        k["drive"] + k["excitatory"] * fire_exc - k["two_a"] * y4 - k["a2"] * y1,
        k["inhibitory"] * fire_inh - k["two_b"] * y5 - k["b2"] * y2,
    )


def _integrate(n_columns, n_steps, n_skip, block, A, p, sigma, params, dt, ops):
    """Stochastic Heun; returns block means of y1 - y2 after ``n_skip`` steps."""
    k = _jr_constants(A, p, sigma, params, dt, ops, n_columns)
    state = [ops.zeros(n_columns) for _ in range(6)]
    n_out = (n_steps - n_skip) // block
    out = ops.zeros((n_out, n_columns))
    half = 0.5 * dt
    for step in range(n_skip + n_out * block):
        kick = k["noise"] * ops.randn(n_columns)  # A a sigma dW, enters dy4 only
        drift = _jr_drift(state, k, ops)
        pred = [s + dt * d for s, d in zip(state, drift)]
        pred[4] = pred[4] + kick
        drift_pred = _jr_drift(pred, k, ops)
        state = [s + half * (d + e) for s, d, e in zip(state, drift, drift_pred)]
        state[4] = state[4] + kick
        if step >= n_skip:  # boxcar mean over each output period
            out[(step - n_skip) // block] += state[1] - state[2]
    return ops.to_numpy(out.T) / block


@verbose
def jansen_rit(
    n_columns,
    duration,
    *,
    A=3.25,
    input_mean=220.0,
    input_noise=2.0,
    transient=0.5,
    dt=5e-4,
    sfreq=500.0,
    seed=None,
    backend="numpy",
    device=None,
    dtype="float64",
    params=None,
    verbose=None,
):
    """Integrate independent Jansen-Rit columns with stochastic input.

    The model of :footcite:t:`JansenRit1995`.

    Parameters
    ----------
    n_columns : int
        Number of independent columns.
    duration : float
        Length of the returned output in seconds (after the transient).
    A : float | array, shape (n_columns,)
        Excitatory synaptic gain in mV (3.25 standard, ~3.5-3.6 spiking).
    input_mean : float | array, shape (n_columns,)
        Mean extrinsic input rate ``p`` in pulses/s.
    input_noise : float | array, shape (n_columns,)
        Input fluctuation ``sigma`` in pulses/s^(1/2): the input is
        ``p(t) = input_mean + sigma xi(t)`` with ``xi`` unit white noise.
    transient : float
        Warm-up time in seconds, integrated from rest and discarded.
    dt : float
        Integration step in seconds (stochastic Heun).
    sfreq : float
        Output sampling frequency; ``1 / (dt * sfreq)`` must be an integer.
        The output is the mean of ``y1 - y2`` over each output period (a
        boxcar anti-aliasing filter).
    seed : int | numpy.random.Generator | torch.Generator | None
        Random seed.
    backend : ``"numpy"`` | ``"torch"``
        Array library; ``"torch"`` runs on ``device``.
    device : str | torch.device | None
        Torch device (torch backend only).
    dtype : ``"float64"`` | ``"float32"``
        Floating precision of the integration.
    params : dict | None
        Overrides of the other Jansen-Rit constants (``B``, ``a``, ``b``,
        ``C``, ``v0``, ``e0``, ``r``).
    %(verbose)s

    Returns
    -------
    output : array, shape (n_columns, n_times)
        Pyramidal membrane potential ``y1 - y2`` in mV, at ``sfreq``.

    Notes
    -----
    State ``(y0, ..., y5)`` follows Jansen and Rit (1995): connectivity
    ``C1 = C``, ``C2 = 0.8 C``, ``C3 = C4 = 0.25 C``; sigmoid
    ``S(v) = 2 e0 / (1 + exp(r (v0 - v)))``. The noise is additive (it enters
    ``dy4 = ... + A a sigma dW``), so the stochastic Heun scheme converges
    with strong order 1.

    References
    ----------
    .. footbibliography::
    """
    _validate_type(n_columns, "int-like", "n_columns")
    _check_option("backend", backend, ("numpy", "torch"))
    _check_option("dtype", dtype, ("float32", "float64"))
    for name, value in (("duration", duration), ("transient", transient)):
        _validate_type(value, "numeric", name)
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")
    block = _check_block(dt, sfreq)
    merged = dict(_JR_DEFAULTS)
    merged.update(params or {})
    unknown = set(merged) - set(_JR_DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown Jansen-Rit parameter(s): {sorted(unknown)}.")
    merged.pop("A")
    if backend == "numpy":
        if device is not None:
            raise ValueError("device is only used with backend='torch'.")
        ops = _NumpyOps(seed, dtype)
    else:
        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(0, 2**63 - 1))
        ops = _TorchOps(seed, dtype, device)
    n_skip = int(round(transient / dt))
    n_steps = n_skip + block * int(round(duration * sfreq))
    logger.info(f"Jansen-Rit: {int(n_columns)} columns, {n_steps} Heun steps")
    return _integrate(
        int(n_columns),
        n_steps,
        n_skip,
        block,
        A,
        input_mean,
        input_noise,
        merged,
        dt,
        ops,
    )


def _check_block(dt, sfreq):
    _validate_type(dt, "numeric", "dt")
    _validate_type(sfreq, "numeric", "sfreq")
    if dt <= 0 or sfreq <= 0:
        raise ValueError(f"dt and sfreq must be positive, got {dt} and {sfreq}.")
    block = 1.0 / (dt * sfreq)
    if abs(block - round(block)) > 1e-6 or round(block) < 1:
        raise ValueError(
            f"1 / (dt * sfreq) must be a positive integer, got {block:g} "
            f"(dt={dt}, sfreq={sfreq})."
        )
    return int(round(block))
