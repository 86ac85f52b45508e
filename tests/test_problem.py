"""The one set-up of the inverse problem: reference and amplitude restoration."""

import numpy as np
import torch

from mne_mmnet.problem import (
    average_projector,
    average_reference,
    referenced_problem,
    restore_scale,
)


def test_average_reference_is_the_mne_projector_for_arrays_and_tensors():
    rng = np.random.default_rng(0)
    eeg = rng.standard_normal((3, 7, 5))
    copy = eeg.copy()
    projector = np.eye(7) - np.full((7, 7), 1 / 7)  # MNE's average reference
    expected = np.einsum("ij,bjt->bit", projector, eeg)
    np.testing.assert_allclose(average_reference(eeg, 1), expected, atol=1e-12)
    tensor = torch.as_tensor(eeg)
    np.testing.assert_allclose(average_reference(tensor, 1).numpy(), expected,
                               atol=1e-12)  # fmt: skip
    np.testing.assert_array_equal(eeg, copy)  # input untouched
    gain = rng.standard_normal((7, 4))
    y, L = referenced_problem(eeg, gain)
    np.testing.assert_allclose(L, projector @ gain, atol=1e-12)
    np.testing.assert_allclose(y, expected, atol=1e-12)


def test_restore_scale_is_the_least_squares_amplitude():
    rng = np.random.default_rng(1)
    L = rng.standard_normal((6, 9))
    x = rng.standard_normal((4, 9, 3))
    amplitude = np.array([2.5, -0.3, 1e-9, 7.0])
    y = amplitude[:, None, None] * np.einsum("cs,bst->bct", L, x)
    y[1] += 0.01 * rng.standard_normal(y[1].shape)
    scaled = restore_scale(x, L, y)
    for b in range(4):
        # the scalar a minimising |a L x - y|^2, by a 1-column least squares
        column = (L @ x[b]).reshape(-1, 1)
        a = np.linalg.lstsq(column, y[b].reshape(-1), rcond=None)[0][0]
        np.testing.assert_allclose(scaled[b], a * x[b], rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(scaled[[0, 2, 3]] / x[[0, 2, 3]],
                               np.broadcast_to(amplitude[[0, 2, 3], None, None],
                                               (3, 9, 3)), rtol=1e-9)  # fmt: skip
    # an estimate the leadfield cannot see gets amplitude 0, not NaN
    assert np.all(restore_scale(np.zeros((1, 9, 3)), L, y[:1]) == 0)


def test_average_projector_is_the_average_reference():
    a = np.random.default_rng(0).standard_normal((7, 5))
    proj = average_projector(7)
    np.testing.assert_allclose(proj @ a, average_reference(a, 0), atol=1e-14)
    np.testing.assert_allclose(proj @ proj, proj, atol=1e-14)  # a projection
