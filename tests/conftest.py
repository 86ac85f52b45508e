"""Helpers shared by the tests."""

import mne
import numpy as np
import pytest


def make_sphere_forward(n_sources, sfreq=256.0, seed=0):
    """A small fixed-orientation EEG forward: radial dipoles in a sphere model.

    The 90 template channel names on MNE's 10-20 positions; sources on a
    6-cm hemisphere with random radial orientations. Returns ``(fwd, info,
    normals)``.
    """
    name = "colin27_1020"
    if name not in mne.channels.get_builtin_montages():  # mne < 1.13
        name = "standard_1020"
    montage = mne.channels.make_standard_montage(name)
    names = [c for c in montage.ch_names if c not in ("T3", "T4", "T5", "T6")]
    info = mne.create_info(names, sfreq, "eeg")
    info.set_montage(montage)
    rng = np.random.default_rng(seed)
    nn = rng.standard_normal((n_sources, 3))
    nn /= np.linalg.norm(nn, axis=1, keepdims=True)
    nn[:, 2] = np.abs(nn[:, 2])
    src = mne.setup_volume_source_space(pos=dict(rr=0.06 * nn, nn=nn), verbose=False)
    sphere = mne.make_sphere_model("auto", "auto", info, verbose=False)
    fwd = mne.make_forward_solution(info, None, src, sphere, verbose=False)
    fwd = mne.convert_forward_solution(
        fwd, force_fixed=True, surf_ori=True, use_cps=False, verbose=False
    )
    return fwd, info, nn


def _hypothesis_profiles():
    """A few-second profile for `make test`, a longer one for `make test-all`."""
    import os

    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # the test extra brings it
        return
    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("default", max_examples=20, **common)
    settings.register_profile("long", max_examples=300, **common)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


_hypothesis_profiles()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny batched LAPACK calls run far faster on one thread."""
    import torch

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)
