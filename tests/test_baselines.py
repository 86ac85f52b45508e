import mne
import numpy as np
import pytest
from conftest import make_sphere_forward
from mne.minimum_norm import apply_inverse, make_inverse_operator

from mne_mmnet.baselines import MINIMUM_NORM_METHODS, make_minimum_norm_solver
from mne_mmnet.metrics import localization_error


@pytest.fixture(scope="module")
def sphere_fwd():
    """A small fixed-orientation EEG forward: 120 radial dipoles in a sphere."""
    fwd, info, _ = make_sphere_forward(120)
    return fwd, info


@pytest.mark.parametrize("method", MINIMUM_NORM_METHODS)
def test_kernel_matches_apply_inverse(sphere_fwd, method):
    """The batched kernel equals mne's apply_inverse on one EvokedArray."""
    fwd, info = sphere_fwd
    solver = make_minimum_norm_solver(fwd, method)
    rng = np.random.default_rng(1)
    eeg = 1e-6 * rng.standard_normal((3, info["nchan"], 10))
    got = solver(eeg, sfreq=info["sfreq"])
    assert got.shape == (3, fwd["nsource"], 10)
    evoked = mne.EvokedArray(eeg[1], info, nave=1)
    evoked.set_eeg_reference(projection=True, verbose=False)
    inv = make_inverse_operator(
        evoked.info, fwd, mne.make_ad_hoc_cov(evoked.info, verbose=False),
        loose=0.0, fixed=True, depth=dict(exp=0.8, allow_fixed_depth=True),
        verbose=False,
    )  # fmt: skip
    want = apply_inverse(evoked, inv, 1 / 9, method, verbose=False).data
    np.testing.assert_allclose(got[1], want, rtol=1e-6, atol=1e-9 * np.abs(want).max())
    # the average reference is part of the kernel: a common offset is ignored
    shifted = solver(eeg + 3e-6, sfreq=info["sfreq"])
    np.testing.assert_allclose(shifted, got, atol=1e-8 * np.abs(got).max())
    assert solver(eeg.astype(np.float32)).dtype == np.float32


def test_solver_validation(sphere_fwd):
    fwd, _ = sphere_fwd
    with pytest.raises(ValueError, match="Invalid value"):
        make_minimum_norm_solver(fwd, "LCMV")
    with pytest.raises(ValueError, match="snr"):
        make_minimum_norm_solver(fwd, "MNE", snr=0)
    solver = make_minimum_norm_solver(fwd, "MNE")
    with pytest.raises(ValueError, match="n_samples, 90, n_times"):
        solver(np.zeros((2, 89, 5)))
    free = mne.convert_forward_solution(fwd, force_fixed=False, verbose=False)
    free["source_ori"] = mne.io.constants.FIFF.FIFFV_MNE_FREE_ORI
    with pytest.raises(ValueError, match="fixed source orientations"):
        make_minimum_norm_solver(free, "MNE")


def test_sloreta_zero_localization_error_on_template():
    """Noiseless single-region sources: sLORETA peaks on the true region."""
    from mne_mmnet.forward import read_template_adjacency, read_template_forward

    fwd = read_template_forward()
    adjacency = read_template_adjacency()
    solver = make_minimum_norm_solver(fwd, "sLORETA")
    leadfield = fwd["sol"]["data"]
    n_sources = leadfield.shape[1]
    # every region active alone (one time sample each), no noise
    sources = np.eye(n_sources)[:, :, np.newaxis]
    estimate = solver(leadfield.T[:, :, np.newaxis])
    le = localization_error(
        estimate, sources, seeds=np.arange(n_sources), positions=fwd["source_rr"],
        adjacency=adjacency, order=3,
    )  # fmt: skip
    # sLORETA's standardisation makes its peak exact for a single source; the
    # measured worst case is below 1e-9 mm (all regions exact)
    assert le.max() < 1e-6
    # MNE (no standardisation) does not have this property
    mne_solver = make_minimum_norm_solver(fwd, "MNE")
    le_mne = localization_error(
        mne_solver(leadfield.T[:, :, np.newaxis]), sources,
        seeds=np.arange(n_sources), positions=fwd["source_rr"],
        adjacency=adjacency, order=3,
    )  # fmt: skip
    assert le_mne.mean() > 1.0


def test_classical_mm_descends_from_sloreta(sphere_fwd):
    """The MM row never ends above its sLORETA start on the cosine energy."""
    import torch

    from mne_mmnet.baselines import make_classical_mm_solver
    from mne_mmnet.solver import energy

    fwd, info = sphere_fwd
    rng = np.random.default_rng(2)
    eeg = fwd["sol"]["data"][:, :3] @ rng.standard_normal((4, 3, 16))
    eeg += 0.3 * np.std(eeg) * rng.standard_normal(eeg.shape)
    solver = make_classical_mm_solver(fwd, n_iter=5, dtype="float64")
    assert solver.settings["bound"] == "analytic"
    x = solver(eeg)
    assert x.shape == (4, fwd["nsource"], 16) and x.dtype == eeg.dtype
    proj = np.eye(info["nchan"]) - 1.0 / info["nchan"]
    y = torch.from_numpy(proj @ eeg)
    L = torch.from_numpy(proj @ fwd["sol"]["data"])
    x0 = make_minimum_norm_solver(fwd, "sLORETA")(eeg)
    before = energy(torch.from_numpy(x0), y, L).total
    after = energy(torch.from_numpy(x), y, L).total
    assert torch.all(after <= before + 1e-12)
    assert torch.any(after < before - 1e-6)  # and it does move
