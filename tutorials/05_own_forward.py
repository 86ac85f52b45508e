"""
.. _tut-own-forward:

Your own forward model
======================

MM-Net's networks work on the 994 template regions, but the head model can be
yours: any fixed-orientation EEG forward on fsaverage's ico-5 source space,
or on a subject's own cortex (last section), is summed over the regions
(each region's gain is the sum over its vertices). Forwards often drop
vertices (``mindist`` removes those too close to the inner skull); a
region that keeps at least one vertex is scaled up for the ones it lost,
and a region that lost all of them is refused, with its name.

Here the head is a three-shell sphere fitted to the electrodes (a few
seconds to compute; a BEM from ``mne.make_bem_solution`` works the same
way).
"""

# %%
import mne
import numpy as np

import mne_mmnet
from mne_mmnet.simulation import simulate_broad

mne.set_log_level("WARNING")
template = mne_mmnet.read_template_forward()
subjects_dir = mne_mmnet.template_subjects_dir()  # fsaverage with ico-5 meshes
src = mne.setup_source_space(
    "fsaverage", spacing="ico5", subjects_dir=subjects_dir, add_dist=False
)
info = mne.create_info(template.ch_names, 250.0, "eeg")
info.set_montage("colin27_1020")
radius, origin, _ = mne.bem.fit_sphere_to_headshape(info, dig_kinds=("eeg",), units="m")

# %%
# A sphere that cuts through the cortex
# -------------------------------------
# MNE's default shells are too small for fsaverage's cortex: vertices outside
# the inner shell are dropped, and with them whole regions.
sphere = mne.make_sphere_model(origin, radius)
fwd = mne.make_forward_solution(info, None, src, sphere, mindist=5.0)
fwd = mne.convert_forward_solution(fwd, surf_ori=True, force_fixed=True)
print(f"{fwd['nsource']} of 20484 vertices kept")

sim = simulate_broad(1, seed=5, n_patches=(1, 1), polarity="negative", snr_db=(10, 10))
evoked = mne.EvokedArray(sim.eeg[0].astype(float), info)
evoked.set_eeg_reference("average", projection=True)
try:
    mne_mmnet.apply_mmnet_inverse(evoked, fwd)
except ValueError as err:
    print(err)

# %%
# A sphere around the cortex
# --------------------------
# With the inner shell 2 mm outside the farthest cortical vertex and a 5 mm
# skull, every vertex is kept and the forward is accepted.


def sphere_around(src):
    """Three shells: inner 2 mm outside the cortex, 5 mm skull, scalp."""
    cortex = np.concatenate([s["rr"][s["vertno"]] for s in src])
    inner = np.linalg.norm(cortex - origin, axis=1).max() + 2e-3
    scalp = max(radius, inner + 9e-3)
    return mne.make_sphere_model(
        origin,
        scalp,
        relative_radii=(inner / scalp, (inner + 5e-3) / scalp, 1.0),
        sigmas=(0.33, 0.0042, 0.33),
    )


sphere = sphere_around(src)
fwd = mne.make_forward_solution(info, None, src, sphere, mindist=2.0)
fwd = mne.convert_forward_solution(fwd, surf_ori=True, force_fixed=True)
print(f"{fwd['nsource']} of 20484 vertices kept")

# %%
# The networks are the same; only the leadfield changed. These data were
# simulated with the template's BEM, so inverting them with the sphere is a
# head-model mismatch: how much that costs is measured by the ``sphere-head``
# and ``conductivity`` scenarios of the generalisation benchmark (README).
stc = mne_mmnet.apply_mmnet_inverse(evoked, fwd)
print(stc)

# %%
# Individual anatomy
# ------------------
# A forward on a subject's own cortex works too: fsaverage's ico-5 source
# space morphed to the subject with :func:`mne.morph_source_spaces` (or any
# cortical source space of the subject). Its vertex numbers are the
# subject's, so each source is given the template region of the nearest
# fsaverage5 vertex on FreeSurfer's spherical registration
# (``surf/?h.sphere.reg`` under ``subjects_dir``), the correspondence MNE's
# morphs use; the result is labelled with the subject's name.
#
# No individual MRI ships with the package, so here a scaled copy of the
# template stands in for the subject (:func:`mne.coreg.scale_mri`, what MNE's
# coregistration makes for a subject without MRI). With a FreeSurfer subject
# the steps are the same, with its BEM (``mne.make_bem_solution``) and its
# head<->MRI ``trans``. ``tests/test_subject_forward.py`` also checks a warped
# cortex with another vertex numbering and a 1.5-degree registration error,
# where the default model localises better than sLORETA with the same
# leadfield.
import shutil
import tempfile
from pathlib import Path

own_dir = Path(tempfile.mkdtemp())
shutil.copytree(subjects_dir / "fsaverage", own_dir / "fsaverage")
mne.coreg.scale_mri(
    "fsaverage", "sub-01", [0.94, 1.05, 0.97], subjects_dir=own_dir,
    labels=False, annot=False,
)  # fmt: skip
src_sub = mne.morph_source_spaces(src, "sub-01", subjects_dir=own_dir)
fwd_sub = mne.make_forward_solution(info, None, src_sub, sphere_around(src_sub))
fwd_sub = mne.convert_forward_solution(fwd_sub, surf_ori=True, force_fixed=True)
stc_sub = mne_mmnet.apply_mmnet_inverse(evoked, fwd_sub, subjects_dir=own_dir)
print(stc_sub.subject, stc_sub.data.shape)
