"""Small shared helpers: versions, devices, dtypes and random seeds."""

import platform
import sys

import numpy as np
from mne.utils import _validate_type

from ._version import __version__


def _dtypes():
    import torch

    return {"float32": torch.float32, "float64": torch.float64}


def sys_info(fid=None):
    """Print the versions of mne-mmnet and of its dependencies.

    Parameters
    ----------
    fid : file-like | None
        Where to write; ``None`` writes to :data:`sys.stdout`.
    """
    import importlib

    import torch

    fid = sys.stdout if fid is None else fid
    lines = [
        f"mne-mmnet:  {__version__}",
        f"Platform:   {platform.platform()}",
        f"Python:     {sys.version.split()[0]}",
    ]
    for mod in (
        "mne",
        "torch",
        "numpy",
        "scipy",
        "nibabel",
        "pooch",
        "tqdm",
        "matplotlib",
        "nilearn",
        "pyvista",
    ):
        try:
            version = importlib.import_module(mod).__version__
        except Exception:  # pragma: no cover - optional module absent
            version = "not installed"
        lines.append(f"{mod + ':':<12}{version}")
    cuda = torch.cuda.is_available()
    lines.append(
        f"{'CUDA:':<12}{torch.version.cuda if cuda else 'not available'}"
        + (f" ({torch.cuda.get_device_name(0)})" if cuda else "")
    )
    lines.append(f"{'threads:':<12}{torch.get_num_threads()}")
    fid.write("\n".join(lines) + "\n")


def _get_device(device):
    """Turn ``device`` (None, str or torch.device) into a usable torch.device.

    ``None`` picks CUDA when available and the CPU otherwise. Asking for CUDA on
    a machine without it raises a ValueError that says what to do.
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _validate_type(device, (str, torch.device), "device")
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(
            f"device must be 'cpu', 'cuda', 'cuda:N' or None, got {device!r}."
        ) from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device must be 'cpu', 'cuda', 'cuda:N' or None, got {str(device)!r}: "
            "mne-mmnet is tested on CPU and CUDA only."
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was requested but CUDA is not available on "
            "this machine (torch "
            f"{torch.__version__}). Use device='cpu' or device=None, or install a "
            "CUDA build of torch."
        )
    return device


def _get_dtype(dtype):
    """Map 'float32' / 'float64' / torch dtype to a torch floating dtype."""
    import torch

    _DTYPES = _dtypes()
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"dtype must be float32 or float64, got {dtype}.")
        return dtype
    _validate_type(dtype, str, "dtype")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
    return _DTYPES[dtype]


def _torch_generator(seed, device="cpu"):
    """Return a torch.Generator seeded from ``seed`` (int, None or Generator)."""
    import torch

    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    elif isinstance(seed, np.random.Generator):
        seed = int(seed.integers(0, 2**63 - 1))
    else:
        _validate_type(seed, "int-like", "seed")
        seed = int(seed)
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(seed)
    return gen


def _sha256(fname):
    """Hex sha256 digest of a file (pooch's file_hash)."""
    import pooch

    return pooch.file_hash(str(fname), alg="sha256")
