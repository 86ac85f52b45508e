"""A Jupyter notebook run headless (no display): invert, then draw the 3-D brain.

The notebook is what a user writes: simulate an evoked, invert it with the
default model, plot it with :func:`mne_mmnet.plot_source_estimate` and with
MNE's own ``stc.plot()`` after :func:`mne_mmnet.template_subjects_dir`. It
runs in a real IPython kernel through nbclient, with ``DISPLAY`` unset.
"""

import os
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("pyvista")

CELLS = [
    """\
import mne
import numpy as np
import mne_mmnet
from mne_mmnet.simulation import simulate_sereega

mne.set_log_level("WARNING")
fwd = mne_mmnet.read_template_forward()
sim = simulate_sereega(1, seed=3, snr_db=10.0, fwd=fwd)
info = mne.create_info(fwd.ch_names, sim.sfreq, "eeg")
evoked = mne.EvokedArray(sim.eeg[0], info, tmin=0.0)
evoked.set_montage("colin27_1020")
evoked.set_eeg_reference("average", projection=True)
stc = mne_mmnet.apply_mmnet_inverse(evoked, fwd)
""",
    """\
def hot_fraction(image):
    rgb = image[..., :3].astype(int)
    return float(((rgb[..., 0] > 180) & (rgb[..., 0] - rgb[..., 2] > 100)).mean())

brain = mne_mmnet.plot_source_estimate(stc, hemi="both", size=(400, 300))
ours = brain.screenshot()
peak = float(stc.times[np.abs(stc.data).max(0).argmax()])
print("OURS", ours.shape, hot_fraction(ours), brain._current_time, peak)
brain.close()
""",
    """\
import pyvista
pyvista.OFF_SCREEN = True
mne.viz.set_3d_backend("notebook")
mne_mmnet.template_subjects_dir(set_env=True)
brain = mne_mmnet.expand_to_vertices(stc).plot(
    hemi="lh", size=(300, 300), initial_time=peak, time_viewer=False,
    brain_kwargs=dict(show=False),
)
plain = brain.screenshot()
print("PLAIN", plain.shape, hot_fraction(plain))
brain.close()
""",
]


def _outputs(cell):
    return "".join(out.get("text", "") for out in cell.outputs)


def test_headless_notebook_renders_the_brain(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")
    }
    env.update(MNE_DATA=str(tmp_path), _MNE_FAKE_HOME_DIR=str(tmp_path))
    env.pop("SUBJECTS_DIR", None)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources=dict(metadata={})
    )
    # the kernel is the interpreter running the tests (ipykernel's own spec)
    client.km = client.create_kernel_manager()
    client.km.kernel_spec.argv[0] = sys.executable
    client.execute(env=env, cwd=str(tmp_path))
    ours = _outputs(nb.cells[1]).split()
    assert ours[0] == "OURS"
    shape = tuple(int(s.strip("(),")) for s in ours[1:4])
    assert shape == (300, 400, 3)
    assert float(ours[4]) > 0.001  # something painted on the cortex
    assert float(ours[5]) == pytest.approx(float(ours[6]))  # the peak time shown
    # headless Jupyter: the figure is shown in the cell as an image
    images = [o for o in nb.cells[1].outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    plain = _outputs(nb.cells[2]).split()
    assert plain[0] == "PLAIN" and float(plain[4]) > 0.001
    assert (tmp_path / "mne_mmnet_fsaverage5" / "fsaverage").is_dir()
