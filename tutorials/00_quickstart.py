"""
.. _tut-quickstart:

Quickstart: simulate, invert, score
===================================

Simulate an extended cortical source on the fsaverage template, make an
:class:`mne.Evoked` of its EEG, estimate the sources with MM-Net and compare
them with sLORETA and the ground truth.
"""

# %%
import matplotlib.pyplot as plt
import mne

import mne_mmnet
from mne_mmnet.baselines import make_minimum_norm_solver
from mne_mmnet.metrics import score_simulation
from mne_mmnet.viz import plot_source_comparison

mne.set_log_level("WARNING")
fwd = mne_mmnet.read_template_forward()
print(fwd)

# %%
# Simulate one SEREEGA-like extended source (a patch grown on the region
# graph, Gaussian in space and time) with sensor noise at 5 dB SNR.
sim = mne_mmnet.simulate_sereega(1, seed=3, snr_db=5.0, fwd=fwd)
info = mne.create_info(fwd.ch_names, sim.sfreq, "eeg")
evoked = mne.EvokedArray(sim.eeg[0].astype(float), info, tmin=0.0)
evoked.set_montage("colin27_1020")
evoked.set_eeg_reference("average", projection=True)
evoked.plot_joint(times="peaks")

# %%
# Invert with the default model (``"broad"``, trained on the broad simulator:
# either polarity, several sources, any SNR, rate and window, perturbed head
# models). The result is an
# :class:`mne.SourceEstimate` with one row per template region.
stc = mne_mmnet.apply_mmnet_inverse(evoked, fwd)
print(stc)

# %%
# Score MM-Net and sLORETA with the paper's five metrics.
sloreta = make_minimum_norm_solver(fwd, "sLORETA")(sim.eeg, sfreq=sim.sfreq)
for name, estimate in (("MM-Net", stc.data[None]), ("sLORETA", sloreta)):
    scores = score_simulation(estimate, sim)
    print(
        f"{name:8s} LE {scores['localization_error']:5.1f} mm  AUC {scores['auc']:.3f}"
    )

# %%
# Source maps at the peak of the simulated activity.
fig = plot_source_comparison(
    sim.sources[0],
    {"MM-Net": stc.data, "sLORETA": sloreta},
    positions=fwd["source_rr"],
    sfreq=sim.sfreq,
    show=False,
)
plt.show()

# %%
# The estimate on the cortex, in 3-D (needs ``pip install mne-mmnet[viz]``).
# :func:`mne_mmnet.plot_source_estimate` paints every template region onto its
# fsaverage5 vertices and draws off screen when there is no display; in a
# desktop session or a notebook the returned :class:`mne.viz.Brain` is
# interactive. Here we keep a screenshot at the peak of the simulated source.
peak_time = stc.times[abs(sim.sources[0]).max(axis=0).argmax()]
brain = mne_mmnet.plot_source_estimate(
    stc, hemi="split", views="lateral", initial_time=peak_time, size=(800, 400)
)
image = brain.screenshot()
brain.close()
fig, ax = plt.subplots(figsize=(8, 4))
ax.imshow(image)
ax.set_axis_off()
plt.show()
