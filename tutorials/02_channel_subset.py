"""
.. _tut-subset:

Your own channel subset
=======================

The networks of MM-Net live in source space, so any subset of the template's
90 electrodes works without retraining: mne-mmnet picks the matching rows of
the leadfield by channel name. Here we drop a third of the channels and mark
one more as bad.
"""

# %%
import mne
import numpy as np

import mne_mmnet

mne.set_log_level("WARNING")
fwd = mne_mmnet.read_template_forward()
sim = mne_mmnet.simulate_sereega(1, seed=5, snr_db=10.0, fwd=fwd)
info = mne.create_info(fwd.ch_names, sim.sfreq, "eeg")
evoked = mne.EvokedArray(sim.eeg[0].astype(float), info)
evoked.set_montage("colin27_1020")

rng = np.random.default_rng(0)
keep = sorted(rng.choice(len(fwd.ch_names), 60, replace=False))
evoked.pick([fwd.ch_names[k] for k in keep])
evoked.info["bads"] = [evoked.ch_names[0]]
evoked.set_eeg_reference("average", projection=True)
print(f"{len(evoked.ch_names)} channels, {len(evoked.info['bads'])} bad")

# %%
stc = mne_mmnet.apply_mmnet_inverse(evoked, fwd)
seed = sim.seeds[0, 0]
t_peak = np.abs(sim.sources[0, seed]).argmax()
peak = np.abs(stc.data[:, t_peak]).argmax()
error = 1e3 * np.linalg.norm(fwd["source_rr"][peak] - fwd["source_rr"][seed])
print(f"peak {error:.1f} mm from the simulated seed with 59 good channels")
