"""What the descent guarantee is: certified, checked and rejected steps."""

import math

import numpy as np
import pytest
import torch

from mne_mmnet.networks import SoftReLUAutoencoder, conv_operator_norm
from mne_mmnet.solver import mm_iterations, normalize_sources
from mne_mmnet.solver.objective import _energy_and_grad, _energy_terms
from mne_mmnet.solver.segment import segment_curvature

N_CH, N_SRC, N_T = 12, 30, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _problems(seed, n, *, with_prior, odd=False):
    gen = torch.Generator().manual_seed(seed)
    L = torch.randn(N_CH, N_SRC, generator=gen, dtype=torch.float64)
    L[:, : N_SRC // 3] *= 0.1
    prior = None
    if with_prior:
        prior = SoftReLUAutoencoder(N_SRC, (8,), eps=0.2, seed=seed, odd=odd).double()
    x = torch.randn(n, N_SRC, N_T, generator=gen, dtype=torch.float64)
    y = torch.randn(n, N_CH, N_T, generator=gen, dtype=torch.float64)
    return L, prior, normalize_sources(x), y, gen


def _run(x, y, L, prior, **kwargs):
    options = dict(
        prior=prior, curvature=None, n_iter=8, gamma=1.0, bound="analytic", lam=1.0,
        safeguard=False,
    )  # fmt: skip
    options.update(kwargs)
    return mm_iterations(x, y, L, **options)


def test_newton_step_along_d_can_raise_the_energy():
    """The counterexample: the 'directional' step is not a majorised step."""
    rises = certified_rises = 0
    for seed in range(3):
        L, _, x, y, _ = _problems(seed, 100, with_prior=False)
        _, trace = _run(x, y, L, None, step="directional")
        up = trace.total[1:] > trace.total[:-1] * (1 + 1e-12)
        rises += int(up.sum())
        certified_rises += int((up & trace.certified).sum())
    assert rises > 0  # measured: a few percent of the 2,400 steps
    assert certified_rises == 0  # a majorant never lets the energy rise


@pytest.mark.parametrize("seed", range(5))
def test_certified_steps_lie_under_their_majorant(seed):
    """1,000 problems: u(x - t D) <= u(x) - t g.D + t^2 C / 2 on [0, 1]."""
    with_prior = seed > 0
    L, prior, x, y, gen = _problems(seed, 200, with_prior=with_prior, odd=seed > 2)
    terms, grad, state, _ = _energy_and_grad(x, y, L, prior, 1.0)
    # steps along the gradient and along random descent directions, with
    # lengths over five decades around the analytic step
    direction = grad.clone()
    half = len(x) // 2
    noise = torch.randn(x[half:].shape, generator=gen, dtype=x.dtype)
    direction[half:] = (
        noise * torch.sign((noise * grad[half:]).sum((1, 2)))[:, None, None]
    )
    length = 10 ** (5 * torch.rand(len(x), generator=gen, dtype=x.dtype) - 4)
    length = length * torch.sqrt((x**2).sum((1, 2)) / (direction**2).sum((1, 2)))
    update = length[:, None, None] * direction
    norms = None if prior is None else prior.operator_norms(N_T)
    curv = segment_curvature(
        x, update, L, prior=prior, state=state, layer_norms=norms, lam=1.0
    )
    rate = (grad * update).sum((1, 2))
    finite = torch.isfinite(curv)
    assert finite.sum() >= 40  # long steps leave the region the bound covers
    ts = torch.linspace(0.05, 1.0, 20, dtype=x.dtype)
    z = (x[None] - ts[:, None, None, None] * update[None]).reshape(-1, N_SRC, N_T)
    y_rep = y[None].expand(len(ts), *y.shape).reshape(-1, N_CH, N_T)
    u = _energy_terms(z, y_rep, L, prior, 1.0)[0].total.reshape(len(ts), -1)
    majorant = terms.total - ts[:, None] * rate + 0.5 * ts[:, None] ** 2 * curv
    slack = 1e-10 * (1 + terms.total.abs())
    assert (u[:, finite] <= majorant[:, finite] + slack[finite]).all()
    # the certified ones among them never raise the energy
    certified = finite & (rate >= 0.5 * curv)
    assert (u[-1, certified] <= terms.total[certified] + slack[certified]).all()


def test_certified_mode_takes_only_majorised_steps():
    L, prior, x, y, _ = _problems(9, 50, with_prior=True)
    for step in ("diagonal", "directional"):
        _, trace = _run(x, y, L, prior, step=step, guarantee="certified")
        moved = trace.decrease_rate > 0
        assert moved.float().mean() > 0.9
        assert bool(trace.certified[moved].all())
        assert (trace.total[1:] <= trace.total[:-1] * (1 + 1e-12)).all()
        labels = trace.step_labels
        assert math.isclose(sum(labels.values()), 1.0)
        assert labels["certified"] > 0.9


@pytest.mark.parametrize("odd", [False, True])
def test_pruned_length_search_takes_the_same_steps(odd, monkeypatch):
    """Lengths left out on the CPU could not win: same iterates, fewer bounds."""
    import mne_mmnet.solver.length_search as mm

    L, prior, x, y, _ = _problems(12, 60, with_prior=True, odd=odd)
    bounded = []

    class Counting(mm.SegmentMajorant):
        def __call__(self, lengths):
            bounded.append(lengths.shape[-1])
            return super().__call__(lengths)

    monkeypatch.setattr(mm, "SegmentMajorant", Counting)
    runs = {}
    for group in (len(mm.CERTIFY_LENGTHS), mm.CERTIFY_GROUP):
        monkeypatch.setattr(mm, "CERTIFY_GROUP", group)
        bounded.clear()
        out, trace = _run(
            x, y, L, prior, step="directional", guarantee="certified", safeguard=True
        )
        runs[group] = out, trace.total, sum(bounded)
    (full, full_energy, n_full), (pruned, energy, n_pruned) = runs.values()
    assert torch.equal(full, pruned)
    assert torch.equal(full_energy, energy)
    assert n_pruned < n_full


def test_checked_steps_are_labelled_as_such():
    """The same solver in 'checked' mode: accepted steps are mostly not certified."""
    L, prior, x, y, _ = _problems(10, 50, with_prior=True)
    _, trace = _run(x, y, L, prior, step="directional", safeguard=True)
    labels = trace.step_labels
    assert math.isclose(sum(labels.values()), 1.0)
    accepted = ~trace.safeguard
    assert labels["checked"] > 0
    assert float(labels["rejected"]) == pytest.approx(
        float(trace.safeguard.float().mean())
    )
    assert not bool((trace.certified & ~accepted).any())


@pytest.mark.parametrize("shape", [(3, 2, 3), (2, 4, 3)])
def test_conv_norms_certified_for_every_length(shape):
    """The DFT bound is >= the exact norm for T in 1..600 (sampled densely)."""
    gen = torch.Generator().manual_seed(sum(shape))
    weight = torch.randn(*shape, generator=gen, dtype=torch.float64)
    c_out, c_in, k = shape
    lengths = [*range(1, 41), 63, 64, 65, 126, 127, 128, 129, 200, 255, 256, 257]
    lengths += [300, 499, 500, 512, 600]
    for n_times in lengths:
        eye = torch.eye(c_in * n_times, dtype=weight.dtype).reshape(-1, c_in, n_times)
        dense = torch.nn.functional.conv1d(eye, weight, padding=k // 2)
        exact = torch.linalg.matrix_norm(dense.reshape(c_in * n_times, -1), ord=2)
        bound = conv_operator_norm(weight, n_times)
        assert exact <= bound
        if n_times >= 16:  # the DFT maximum on T + k - 1 points is close
            assert bound <= exact * (1.03 if n_times < 64 else 1.005)


def test_segment_bounds_for_many_lengths_match_one_segment_each():
    """The vectorised bound over lengths equals the bound of each scaled step."""
    from mne_mmnet.solver.segment import segment_curvatures

    L, prior, x, y, gen = _problems(11, 20, with_prior=True, odd=True)
    terms, grad, state, _ = _energy_and_grad(x, y, L, prior, 1.0)
    update = grad * torch.sqrt((x**2).sum() / (grad**2).sum())
    lengths = 2.0 ** -torch.arange(0, 30, 3, dtype=x.dtype)
    kwargs = dict(prior=prior, state=state, layer_norms=prior.operator_norms(N_T),
                  lam=1.0)  # fmt: skip
    many = segment_curvatures(x, update, L, lengths, **kwargs)
    for k, length in enumerate(lengths):
        one = segment_curvature(x, length * update, L, **kwargs)
        finite = torch.isfinite(one)
        assert torch.equal(finite, torch.isfinite(many[:, k]))
        torch.testing.assert_close(many[finite, k], one[finite], rtol=1e-9, atol=0)
    assert bool(torch.isfinite(many[:, -1]).all())  # short segments: finite


def test_unit_direction_curvature_bound_against_finite_differences():
    """sup |d^2/ds^2 (w/|w|)| <= (2/sqrt3) |b|^2 / min |w|^2 on w = a - s b,
    and the constant cannot be lowered (attained within 2%)."""
    from mne_mmnet.solver.segment import _Line

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 3, 1, generator=gen, dtype=torch.float64)
    b = torch.randn(2000, 3, 1, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([0.05, 0.3], dtype=torch.float64)
    bound = _Line(a, b).bound(lengths)
    h = 1e-4
    worst = torch.zeros(2000, 2, dtype=torch.float64)
    for k, length in enumerate(lengths):
        for s in torch.linspace(h, float(length) - h, 25, dtype=torch.float64):
            e = [(a - t * b) / torch.linalg.vector_norm(a - t * b, dim=(1, 2),
                                                          keepdim=True)
                 for t in (s - h, s, s + h)]  # fmt: skip
            second = (e[0] - 2 * e[1] + e[2]) / h**2
            worst[:, k] = torch.maximum(
                worst[:, k], torch.linalg.vector_norm(second, dim=(1, 2))
            )
    assert bool((worst <= bound * (1 + 1e-5)).all())
    assert float((worst / bound).max()) > 0.98


def test_certified_mode_through_the_api(one_torch_thread):
    """The shipped default runs certified: every step a majorised step, the
    energy never rising, steps long enough to matter (a good share of the
    checked mode's decrease) and estimates close to the checked ones, on
    epochs of the length it is benchmarked at (T = 64)."""
    import mne

    import mne_mmnet

    fwd = mne_mmnet.read_template_forward(verbose=False)
    sim = mne_mmnet.simulate_sereega(4, seed=3, snr_db=10.0, fwd=fwd, n_times=64,
                                     verbose=False)  # fmt: skip
    info = mne.create_info(list(mne_mmnet.TEMPLATE_CH_NAMES), sim.sfreq, "eeg")
    assert mne_mmnet.load_model("broad", verbose=False).guarantee == "certified"
    shares = []
    for eeg in sim.eeg:
        evoked = mne.EvokedArray(eeg.astype(float), info, verbose=False)
        stc, trace = mne_mmnet.apply_mmnet_inverse(
            evoked, fwd, device="cpu", return_trace=True, verbose=False
        )
        assert trace.step_labels["certified"] == 1.0
        assert (np.diff(trace.total, axis=0) <= 0).all()
        checked, trace_checked = mne_mmnet.apply_mmnet_inverse(
            evoked, fwd, guarantee="checked", device="cpu", return_trace=True,
            verbose=False,
        )  # fmt: skip
        assert trace_checked.step_labels["checked"] > 0.5
        decrease = float(trace.total[0, 0] - trace.total[-1, 0])
        decrease_checked = float(trace_checked.total[0, 0] - trace_checked.total[-1, 0])
        assert decrease > 0 and decrease_checked > 0
        shares.append(decrease / decrease_checked)
        corr = np.corrcoef(stc.data.ravel(), checked.data.ravel())[0, 1]
        assert corr > 0.99
    assert np.median(shares) > 0.2  # measured: 0.28-0.40, median 0.30
    with pytest.raises(ValueError, match="guarantee"):
        mne_mmnet.apply_mmnet_inverse(evoked, fwd, guarantee="proved", verbose=False)


@pytest.mark.parametrize("odd", [False, True])
def test_prior_segment_expansion_against_direct_evaluation(odd):
    """Phi(z + s t) - Phi(z) - s J t stays within s^2 R_Phi / 2 on [0, l], and
    the tangent is torch's Jacobian-vector product."""
    gen = torch.Generator().manual_seed(int(odd))
    prior = SoftReLUAutoencoder(N_SRC, (16, 8), eps=0.2, seed=3, odd=odd).double()
    z = torch.randn(50, N_SRC, N_T, generator=gen, dtype=torch.float64)
    tangent = torch.randn(50, N_SRC, N_T, generator=gen, dtype=torch.float64)
    lengths = 10.0 ** -torch.arange(0, 4, dtype=torch.float64)
    phi, pre = prior.forward_with_preactivations(z)
    norms = prior.operator_norms(N_T)
    with torch.no_grad():
        jt, r_phi = prior.segment_expansion(
            [p.detach() for p in pre], tangent, torch.zeros(50, 4, dtype=z.dtype),
            lengths.expand(50, -1), norms,
        )  # fmt: skip
    _, jvp = torch.autograd.functional.jvp(prior, z, tangent)
    torch.testing.assert_close(jt, jvp)
    tight = []
    for k, length in enumerate(lengths):
        for s in torch.linspace(0.1, 1.0, 10, dtype=z.dtype) * length:
            with torch.no_grad():
                rest = prior(z + s * tangent) - phi.detach() - s * jt
            size = torch.sqrt((rest**2).sum((1, 2)))
            assert bool((size <= 0.5 * s**2 * r_phi[:, k] * (1 + 1e-9)).all())
            tight.append(float((size / (0.5 * s**2 * r_phi[:, k])).max()))
    assert max(tight) > 1e-2  # not vacuous (measured: 0.07, 0.03)
