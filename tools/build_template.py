"""Rebuild the template head model shipped in mne_mmnet/data/.

Writes ``template-fwd.fif`` (90 x 994 fixed-orientation EEG forward),
``template-regions.npz`` (parcellation, white-surface positions, adjacency)
and their sha256 in ``registry.txt``. Everything is seeded and the files carry
no time stamps, so two runs on one machine give byte-identical files:

    python tools/build_template.py            # ico-4 offline BEM (~2 min CPU)
    python tools/build_template.py --check    # rebuild in a temp dir, compare

Across machines the BEM solution (LAPACK inversion of a 7,686 x 7,686 matrix)
may differ in the last bits; the leadfield is stored in float32 (FIF), which
absorbs most but not necessarily all of that, so cross-machine byte identity
is not guaranteed; the numbers agree to float32 precision.
"""

import argparse
import hashlib
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from unittest import mock

import mne
import numpy as np

from mne_mmnet.forward._build import _make_template
from mne_mmnet.forward.template import (
    _DATA_DIR,
    FORWARD_FNAME,
    REGIONS_FNAME,
    REGISTRY_FNAME,
)

# fixed FIFF file id (no clock, no MAC address) so that writes are reproducible
_FIXED_FILE_ID = {
    "machid": np.array([0, 0], np.int32),
    "version": mne.io.constants.FIFF.FIFFC_VERSION,
    "secs": 0,
    "usecs": 0,
}


def _save_npz_deterministic(fname, arrays):
    """np.savez without the zip members' time stamps."""
    with zipfile.ZipFile(fname, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as fid:
                np.lib.format.write_array(fid, np.ascontiguousarray(arrays[key]))


def _write_forward_deterministic(fname, fwd):
    with (
        mock.patch("mne._fiff.write.get_new_file_id", return_value=_FIXED_FILE_ID),
        mock.patch("mne._fiff.write.get_machid", return_value=np.zeros(2, np.int32)),
        warnings.catch_warnings(),
    ):
        # mne warns that a fixed-orientation forward cannot be reverted to free
        warnings.simplefilter("ignore", RuntimeWarning)
        mne.write_forward_solution(fname, fwd, overwrite=True, verbose=False)


def _sha256(fname):
    return hashlib.sha256(Path(fname).read_bytes()).hexdigest()


def _update_registry(registry, out_dir, route):
    """Rewrite the template's lines of the registry, keeping everyone else's."""
    ours = (FORWARD_FNAME, REGIONS_FNAME)
    tag = "# template files: tools/build_template.py"
    kept = []
    if registry.is_file():
        for line in registry.read_text().splitlines():
            if line.startswith(tag) or (line.split() or [""])[0] in ours:
                continue
            kept.append(line)
    lines = kept + [f"{tag} ({route})"]
    lines += [f"{name} {_sha256(out_dir / name)}" for name in ours]
    registry.write_text("\n".join(lines) + "\n")


def build(out_dir, *, ico=4, subjects_dir=None):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = _make_template(subjects_dir=subjects_dir, ico=ico)
    _write_forward_deterministic(out_dir / FORWARD_FNAME, result["forward"])
    _save_npz_deterministic(out_dir / REGIONS_FNAME, result["regions"])
    _update_registry(
        out_dir / REGISTRY_FNAME,
        out_dir,
        f"offline BEM ico-{ico}"
        if result["route"] == "offline"
        else "real fsaverage BEM",
    )
    return {name: _sha256(out_dir / name) for name in (FORWARD_FNAME, REGIONS_FNAME)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(_DATA_DIR))
    parser.add_argument("--ico", type=int, default=4)
    parser.add_argument("--subjects-dir", default=None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="rebuild into a temporary folder and compare with --out-dir",
    )
    args = parser.parse_args(argv)
    mne.set_log_level("info")
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            new = build(tmp, ico=args.ico, subjects_dir=args.subjects_dir)
        ok = True
        for name, digest in new.items():
            old = _sha256(Path(args.out_dir) / name)
            same = old == digest
            ok &= same
            print(f"{name}: {'identical' if same else 'DIFFERENT'} ({digest})")
        return 0 if ok else 1
    digests = build(args.out_dir, ico=args.ico, subjects_dir=args.subjects_dir)
    for name, digest in digests.items():
        print(f"{name} {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
