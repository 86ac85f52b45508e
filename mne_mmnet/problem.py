"""Set-up of the inverse problem, shared by inference, training and benchmarks.

The data and the leadfield are used average-referenced (a projection: exact
for any common-reference recording, see :func:`average_reference`), the
solver works scale-free on unit-norm data, and source amplitudes are restored
afterwards by a least-squares fit to the data (:func:`restore_scale`). These
functions take numpy arrays or torch tensors and import neither torch nor MNE.
"""

import numpy as np


def average_reference(a, axis):
    """Subtract the mean over the channel axis (numpy array or torch tensor).

    Parameters
    ----------
    a : array | torch.Tensor
        Data (channels on ``axis``, e.g. 1 for (batch, channels, times)) or
        a leadfield (``axis=0`` for (channels, sources)).
    axis : int
        The channel axis.

    Returns
    -------
    referenced : array | torch.Tensor
        A new array of the same kind; the input is not modified.
    """
    if isinstance(a, np.ndarray):
        return a - a.mean(axis=axis, keepdims=True)
    return a - a.mean(dim=axis, keepdim=True)  # torch


def average_projector(n_channels):
    """Return the average-reference projector ``I - 1 1' / n`` (numpy, float64).

    ``average_projector(n) @ a`` equals ``average_reference(a, 0)``; the
    matrix is what an inverse operator stores to reference new data.
    """
    return np.eye(n_channels) - 1.0 / n_channels


def referenced_problem(eeg, leadfield):
    """Average-referenced ``(y, L)`` from data (batch, channels, times) and a gain.

    Both are float64 numpy arrays; the inputs are not modified.
    """
    y = average_reference(np.asarray(eeg, np.float64), 1)
    L = average_reference(np.asarray(leadfield, np.float64), 0)
    return y, L


def restore_scale(x, leadfield, y):
    """Least-squares amplitude ``a`` per sample so that ``a L x`` fits ``y``.

    Parameters
    ----------
    x : array, shape (batch, n_sources, n_times)
        Scale-free source estimates.
    leadfield : array, shape (n_channels, n_sources)
        The (referenced) leadfield the data are modelled with.
    y : array, shape (batch, n_channels, n_times)
        The (referenced) data.

    Returns
    -------
    scaled : array, shape (batch, n_sources, n_times)
        ``a x`` with ``a = <L x, y> / |L x|^2`` (0 where ``L x = 0``).
    """
    pred = np.einsum("cs,bst->bct", leadfield, x)
    num = np.einsum("bct,bct->b", pred, y)
    den = np.einsum("bct,bct->b", pred, pred)
    scale = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return x * scale[:, np.newaxis, np.newaxis]
