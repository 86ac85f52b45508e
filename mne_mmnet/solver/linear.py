"""Linear inverse kernels (MNE, sLORETA) computed in torch from a leadfield."""

import hashlib
import threading
from collections import OrderedDict

import torch
from mne.utils import _check_option, _validate_type

from .._docs import fill_doc
from ..utils import _torch_generator
from .objective import normalize_sources
from .subspace import subspace_scan

#: scale of the paper's random start, ``x0 ~ 1e-3 N(0, 1)``
RANDOM_START_SCALE = 1e-3
INITS = ("random", "mne", "sloreta", "prior", "gated")
# kernels of recently used (CPU) leadfields: every call with the same
# leadfield (the one-line apply_mmnet_inverse) reuses the solve
_KERNELS = OrderedDict()
_KERNELS_LOCK = threading.Lock()
_KERNELS_MAX = 8


def _kernel_key(L, method, lambda2):
    if L.device.type != "cpu" or L.requires_grad:
        return None
    digest = hashlib.sha1(L.detach().contiguous().numpy().tobytes()).hexdigest()
    return (method, float(lambda2), str(L.dtype), tuple(L.shape), digest)


def linear_inverse_kernel(L, *, method="mne", lambda2=1.0 / 9.0):
    """Minimum-norm (or sLORETA) inverse kernel with identity noise covariance.

    Parameters
    ----------
    L : torch.Tensor, shape (n_channels, n_sources)
        Leadfield (average-referenced if the data are).
    method : 'mne' | 'sloreta'
        Plain minimum norm, or its sLORETA standardisation.
    lambda2 : float
        Regularisation, in MNE's units (``1 / SNR**2``).

    Returns
    -------
    kernel : torch.Tensor, shape (n_sources, n_channels)
        ``x = kernel @ y``; float64 on ``L``'s device. Kernels of the last 8
        CPU leadfields are cached (keyed on the leadfield's bytes): treat the
        result as read-only.

    Notes
    -----
    ``K = L' (L L' + lambda2 * tr(L L') / rank(L) * I)^{-1}``. MNE scales the
    source covariance so that the whitened gain has ``tr(G G') = n_nonzero``,
    the rank of the whitened noise covariance; with an identity covariance and
    an average-referenced leadfield that rank equals ``rank(L)`` (one less than
    the number of channels), which is why the trace is divided by the rank.
    sLORETA divides row ``k`` of ``K`` by ``sqrt((K L)_kk)``, the square root
    of the resolution matrix's diagonal (Pascual-Marqui 2002); MNE's sLORETA
    output equals this up to one global factor (its noise normalisation also
    carries the source-covariance scaling), which the scale-free MM energy
    ignores.
    """
    _validate_type(L, torch.Tensor, "L")
    _check_option("method", method, ("mne", "sloreta"))
    _validate_type(lambda2, "numeric", "lambda2")
    if L.ndim != 2:
        raise ValueError(
            f"L must be 2-D (n_channels, n_sources), got {tuple(L.shape)}."
        )
    if lambda2 <= 0:
        raise ValueError(f"lambda2 must be > 0, got {lambda2}.")
    key = _kernel_key(L, method, lambda2)
    if key is not None:
        with _KERNELS_LOCK:
            if key in _KERNELS:
                _KERNELS.move_to_end(key)
                return _KERNELS[key]
    kernel = _compute_kernel(L, method, lambda2)
    if key is not None:
        with _KERNELS_LOCK:
            _KERNELS[key] = kernel
            while len(_KERNELS) > _KERNELS_MAX:
                _KERNELS.popitem(last=False)
    return kernel


def _compute_kernel(L, method, lambda2):
    G = L.detach().to(torch.float64)
    gram = G @ G.T
    rank = torch.linalg.matrix_rank(G)
    reg = lambda2 * torch.trace(gram) / rank
    eye = torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    kernel = torch.linalg.solve(gram + reg * eye, G).T
    if method == "sloreta":
        resolution_diag = (kernel * G.T).sum(1)
        kernel = kernel / torch.sqrt(resolution_diag)[:, None]
    return kernel


@fill_doc
def initial_estimate(y, L, *, init="random", seed=None, prior=None, gate=None):
    """Compute the starting point of the MM iterations.

    Parameters
    ----------
    %(y_L)s
    init : 'random' | 'mne' | 'sloreta' | 'prior' | 'gated'
        ``'random'`` draws the paper's ``1e-3 N(0, 1)``; ``'mne'`` and
        ``'sloreta'`` apply :func:`linear_inverse_kernel` (``lambda2 = 1/9``);
        ``'prior'`` is ``Phi(x_s)``, the prior autoencoder applied to the
        sLORETA estimate ``x_s`` rescaled to unit RMS (a learned start: the
        iterations then descend the energy from there); ``'gated'`` is
        ``g s' + (1 - g) Phi(s)`` with ``s'`` the sparse estimate of
        :func:`~mne_mmnet.solver.subspace.subspace_scan` at unit RMS and the
        weight ``g`` in (0, 1) of a learned
        :class:`~mne_mmnet.networks.StartGate` (``s'`` where it is likely the
        better start, as for focal sources and a few dipoles).
    seed : None | int | numpy.random.Generator | torch.Generator
        Seed of the random start. The draw is made on the CPU in float64 and
        then moved, so a seed gives the same start on every device.
    prior : torch.nn.Module | None
        The autoencoder, for ``init='prior'`` and ``init='gated'``.
    gate : torch.nn.Module | None
        The :class:`~mne_mmnet.networks.StartGate`, for ``init='gated'``.

    Returns
    -------
    x0 : torch.Tensor, shape (batch, n_sources, n_times)
        On the device and with the dtype of ``y``.
    """
    _check_option("init", init, INITS)
    shape = (y.shape[0], L.shape[1], y.shape[-1])
    if init == "random":
        gen = seed if isinstance(seed, torch.Generator) else _torch_generator(seed)
        noise = torch.randn(
            shape, generator=gen, dtype=torch.float64, device=gen.device
        )
        return (RANDOM_START_SCALE * noise).to(device=y.device, dtype=y.dtype)
    kernel = linear_inverse_kernel(L, method=start_kernel_method(init))
    x0 = torch.matmul(kernel, y.to(kernel.dtype)).to(y.dtype)
    return finish_start(x0, init, prior, gate=gate, y=y, L=L)


def start_kernel_method(init):
    """Return the linear inverse a start is computed from ("mne" or "sloreta")."""
    return "sloreta" if init in ("prior", "gated") else init


def finish_start(x_linear, init, prior, *, gate=None, y=None, L=None):
    """Return the start from the linear estimate.

    The estimate itself, the prior at it (``init='prior'``), or the gated
    mixture of the sparse subspace-scan estimate and the prior's output
    (``init='gated'``, which needs ``gate``, the data ``y`` and the leadfield
    ``L``).
    """
    if init not in ("prior", "gated"):
        return x_linear
    if prior is None:
        raise ValueError(f"init={init!r} needs the prior autoencoder (prior=).")
    p = prior(normalize_sources(x_linear))
    if init == "prior":
        return p
    if gate is None or y is None or L is None:
        raise ValueError("init='gated' needs the start gate (gate=), y and L.")
    x_scan, subspace = subspace_scan(y, L, return_subspace=True)
    s = normalize_sources(x_scan.to(x_linear.dtype))
    g = gate(s, p, y.to(s.dtype), L.to(s.dtype), subspace=subspace)[:, None, None]
    return g * s + (1 - g) * p
