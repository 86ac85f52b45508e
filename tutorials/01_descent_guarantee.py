"""
.. _tut-descent:

The descent guarantee and convergence
=====================================

Every MM-Net step is a projected Majorization-Minimization step: the learned
curvature is clipped to the analytic curvature bound, and a safeguard rejects
any step that would increase the energy. Here we look at the energy along
the iterations (the paper's Figure 2) and at how often the projection binds.
"""

# %%
import matplotlib.pyplot as plt
import mne
import numpy as np

import mne_mmnet
from mne_mmnet.viz import plot_convergence

mne.set_log_level("WARNING")
fwd = mne_mmnet.read_template_forward()
sim = mne_mmnet.simulate_sereega(8, seed=11, snr_db=5.0, fwd=fwd)
leadfield = fwd["sol"]["data"] - fwd["sol"]["data"].mean(axis=0)
eeg = sim.eeg - sim.eeg.mean(axis=1, keepdims=True)

# %%
# Run the pretrained model for 30 iterations (it was trained with 10) and
# keep the trace.
model = mne_mmnet.load_model("sereega", device="cpu")
x, trace = mne_mmnet.solve_mm(
    eeg,
    leadfield,
    model=model,
    n_iter=30,
    bound=model.bound,
    step=model.step,
    init=model.init,
    seed=0,
    return_trace=True,
)
plot_convergence(trace, show=False)
plt.show()

# %%
# The energy never increases, by construction:
increase = np.diff(trace.total, axis=0).max()
print(f"largest energy change between iterations: {increase:.2e} (<= 0)")
print(f"safeguard fired in {100 * trace.safeguard_rate:.1f}% of the steps")
print(f"projection bound at nu_up in {100 * trace.clip_upper.mean():.1f}% of entries")

# %%
# The same weights without the projection (an R-MM-Net-like ablation at
# inference): steps are no longer certified, and only the safeguard stands
# between them and an increase of the energy.
x_free, trace_free = mne_mmnet.solve_mm(
    eeg, leadfield, model=model, n_iter=30, bound=None, step=model.step,
    init=model.init, seed=0, return_trace=True,
)  # fmt: skip
rate = 100 * trace_free.safeguard_rate
print(f"without projection the safeguard fired in {rate:.1f}% of steps")
