"""
.. _tut-descent:

The descent guarantee and convergence
=====================================

The energy of an MM-Net solve never increases: every step is either
*certified* (a quadratic majorant valid on the whole segment it moves along
proves descent), *checked* (accepted because its energy was evaluated and
did not rise) or *rejected* (kept out by the safeguard). Here we look at the
energy along the iterations (the paper's Figure 2), at the three kinds of
step, and at what certifying every step costs.
"""

# %%
import matplotlib.pyplot as plt
import mne
import numpy as np

import mne_mmnet
from mne_mmnet.problem import referenced_problem
from mne_mmnet.viz import plot_convergence

mne.set_log_level("WARNING")
fwd = mne_mmnet.read_template_forward()
sim = mne_mmnet.simulate_sereega(8, seed=11, snr_db=5.0, fwd=fwd)
# the set-up every part of the package uses: average-referenced data and gain
eeg, leadfield = referenced_problem(sim.eeg, fwd["sol"]["data"])

# %%
# Run the pretrained model for 30 iterations (it was trained with 10) and
# keep the trace. ``solve_mm`` takes the model's own settings (start, step,
# bound, relaxation) unless told otherwise.
model = mne_mmnet.load_model("sereega", device="cpu")
x, trace = mne_mmnet.solve_mm(
    eeg, leadfield, model=model, n_iter=30, seed=0, return_trace=True
)
plot_convergence(trace, show=False)
plt.show()

# %%
# The energy never increases (the safeguard checks every step), and the
# trace says why each step was safe:
increase = np.diff(trace.total, axis=0).max()
print(f"largest energy change between iterations: {increase:.2e} (<= 0)")
labels = trace.step_labels
print(
    f"steps certified {100 * labels['certified']:.1f}%, checked "
    f"{100 * labels['checked']:.1f}%, rejected {100 * labels['rejected']:.1f}%"
)
print(f"projection bound at nu_up in {100 * trace.clip_upper.mean():.1f}% of entries")

# %%
# With ``guarantee="certified"`` every step is cut to the minimiser of its
# segment majorant: all steps taken are majorization-minimization steps.
# They are shorter than this model's learned steps, which the majorant does
# not cover (the default model ``"broad"``, whose accuracy comes from its
# start, runs in this mode).
x_cert, trace_cert = mne_mmnet.solve_mm(
    eeg, leadfield, model=model, n_iter=30, guarantee="certified", seed=0,
    return_trace=True,
)  # fmt: skip
labels = trace_cert.step_labels
print(f"certified mode: {100 * labels['certified']:.1f}% of steps certified")
print(
    f"energy after 30 iterations: checked {trace.total[-1].mean():.4f}, "
    f"certified {trace_cert.total[-1].mean():.4f} (start {trace.total[0].mean():.4f})"
)
