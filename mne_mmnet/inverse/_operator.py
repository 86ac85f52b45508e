"""The prepared MM-Net inverse: everything that depends on (model, fwd, channels).

Following MNE's make-then-apply pattern (``make_inverse_operator`` /
``apply_inverse``): :func:`make_mmnet_inverse` loads the model, picks and
references the leadfield rows of the recording's channels, and computes the
start kernel once; :func:`mne_mmnet.apply_mmnet_inverse` accepts the result in
place of the forward.
"""

import copy
import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from mne import Forward
from mne.utils import _validate_type, logger, verbose

from .._docs import fill_doc
from ..pretrained import _MODEL_NAMES, DEFAULT_MODEL
from ..utils import _get_device
from ._prepare import (
    _match_channels,
    _pick_eeg,
    _prepare_leadfield,
    _reference_projector,
)

_MODELS = {}
_MODELS_LOCK = threading.Lock()
_DOUBLE_LOCK = threading.Lock()
#: prepared inverses of the calls by name, the most recently used last
_OPERATORS = OrderedDict()
_OPERATORS_LOCK = threading.Lock()
#: how many of them are kept (about 2 MB each besides the shared model)
_MAX_OPERATORS = 8


class MMNetInverse:
    """A prepared MM-Net inverse for one model, forward and channel set.

    Made by :func:`make_mmnet_inverse`; pass it to
    :func:`mne_mmnet.apply_mmnet_inverse` or
    :func:`mne_mmnet.apply_mmnet_inverse_epochs` in place of ``fwd``.

    Attributes
    ----------
    ch_names : list of str
        The good EEG channels, in the order the data must have.
    model : MMNet | None
        The loaded model (None: the hand-crafted MM solver).
    device : torch.device
        Where the solver runs.
    reference : str
        How the average reference is applied.
    """

    def __init__(self, *, net, ch_names, proj, leadfield, vertices, subject,
                 device, reference, model_name):  # fmt: skip
        import torch

        from ..solver.linear import linear_inverse_kernel, start_kernel_method

        self.model = net
        self.ch_names = list(ch_names)
        self.proj = proj
        self.leadfield = leadfield
        self.vertices = vertices
        self.subject = subject
        self.device = device
        self.reference = reference
        self.model_name = model_name
        self.L = torch.as_tensor(leadfield, dtype=torch.float32, device=device)
        init = "sloreta" if net is None else net.init
        self.kernel = kernel = None
        if init != "random":
            kernel = linear_inverse_kernel(
                self.L.double(), method=start_kernel_method(init)
            )
            self.kernel = kernel.to(torch.float32)
        self._double = None
        self._kernel64 = kernel

    def _arrays(self, dtype):
        """``(model, L, kernel)`` in ``dtype``; float64 copies made once, shared."""
        import torch

        if dtype == "float32":
            return self.model, self.L, self.kernel
        with _DOUBLE_LOCK:
            if self._double is None:
                net = None
                if self.model is not None:
                    net = copy.deepcopy(self.model).to(torch.float64)
                self._double = (net, self.L.double(), self._kernel64)
        return self._double

    def __repr__(self):
        return (
            f"<MMNetInverse | model {self.model_name}, {len(self.ch_names)} EEG "
            f"channels, {sum(len(v) for v in self.vertices)} sources, "
            f"{self.device}>"
        )

    def _check_info(self, info, name):
        """Check that the good EEG channels and projectors are the prepared ones."""
        picks, ch_names = _pick_eeg(info, name)
        if ch_names != self.ch_names:
            raise ValueError(
                f"{name} has the good EEG channels {_short(ch_names)}, the inverse "
                f"was prepared for {_short(self.ch_names)}; make a new one with "
                f"make_mmnet_inverse({name}.info, fwd) (bad channels and channel "
                "order count)."
            )
        proj, _ = _reference_projector(info, ch_names, name, quiet=True)
        if not np.allclose(proj, self.proj):
            raise ValueError(
                f"{name}'s projectors differ from those the inverse was prepared "
                f"with; make a new one with make_mmnet_inverse({name}.info, fwd)."
            )
        return picks


def _short(names, n=6):
    return "[" + ", ".join(names[:n]) + (", ...]" if len(names) > n else "]")


def _model_key(model, device):
    if isinstance(model, str) and model in _MODEL_NAMES:
        return ("name", model, str(device))
    if isinstance(model, str | Path):
        path = Path(model).expanduser().resolve()
        return ("path", str(path), path.stat().st_mtime_ns, str(device))
    return None


def _resolve_model(model, device):
    """Load ``model`` (name, path, module or None) onto ``device``, cached.

    Names and paths are loaded once per process and device (thread-safe);
    the loaded module is shared and only ever run in eval mode.
    """
    if model is None:
        return None
    from ..networks import MMNet
    from ..pretrained import load_model

    if isinstance(model, str) and model not in _MODEL_NAMES:
        if not model or not Path(model).is_file():
            raise ValueError(
                f"model must be one of {list(_MODEL_NAMES)}, a path to a saved "
                f"model, an MMNet module or None; got {model!r}, which is neither "
                "a known name nor an existing file."
            )
    elif isinstance(model, Path) and not model.expanduser().is_file():
        raise ValueError(f"model {str(model)!r} is not an existing model file.")
    key = _model_key(model, device)
    with _MODELS_LOCK:
        net = _MODELS.get(key) if key is not None else None
        if net is None:
            net = load_model(model, device=device)
            if key is not None:
                _MODELS[key] = net
    if not isinstance(net, MMNet):
        raise TypeError(
            f"model must be an MM-Net; {model!r} holds a {type(net).__name__}, a "
            "learned baseline of the benchmark without MM steps. Run it with "
            "mne_mmnet.bench or call the module directly."
        )
    return net


@verbose
@fill_doc
def make_mmnet_inverse(
    info, fwd, model=DEFAULT_MODEL, *, device=None, subjects_dir=None, verbose=None
):
    """Prepare an MM-Net inverse for the channels of a recording.

    Parameters
    ----------
    info : mne.Info
        Measurement info of the data to invert (its good EEG channels,
        projectors and reference are used).
    %(fwd)s
    %(model)s
    %(device)s
    %(subjects_dir)s
    %(verbose)s

    Returns
    -------
    inv : MMNetInverse
        Pass it to :func:`mne_mmnet.apply_mmnet_inverse` in place of ``fwd``:
        the model, the referenced leadfield and the start kernel are not
        computed again.

    Raises
    ------
    ValueError
        As :func:`mne_mmnet.apply_mmnet_inverse` for the channels, forward,
        model and device.
    """
    import mne

    _validate_type(info, mne.Info, "info", "mne.Info")
    return _make_operator(
        info, fwd, model, device, name="info", subjects_dir=subjects_dir
    )


def _make_operator(info, fwd, model, device, *, name, subjects_dir=None, reuse=False):
    """Check the inputs and prepare the inverse.

    With ``reuse`` (the calls by name), an inverse prepared earlier for the
    same model, device, channels, projectors and leadfield rows is returned
    (compared by content, so an edited forward is prepared again); every
    check runs on every call.
    """
    device = _get_device(device)
    _, ch_names = _pick_eeg(info, name)
    proj, reference = _reference_projector(info, ch_names, name)
    _validate_type(fwd, Forward, "fwd", "mne.Forward or MMNetInverse")
    rows = _match_channels(info, ch_names, fwd, name)
    gain, vertices, subject = _prepare_leadfield(fwd, rows, subjects_dir)
    key = None
    if reuse:
        key = _operator_key(model, device, ch_names, (proj, gain, *vertices),
                            (subject, reference))  # fmt: skip
    if key is not None:
        with _OPERATORS_LOCK:
            if key in _OPERATORS:
                _OPERATORS.move_to_end(key)
                return _OPERATORS[key]
    net = _resolve_model(model, device)
    if net is not None and (net.bound is None or not net.safeguard):
        logger.info(
            "    This model runs without the projection onto the curvature bound "
            "or without the descent safeguard (R-MM-Net): its steps carry no "
            "descent guarantee."
        )
    label = model if isinstance(model, str | Path) or model is None else "custom"
    inv = MMNetInverse(
        net=net, ch_names=ch_names, proj=proj, leadfield=proj @ gain,
        vertices=vertices, subject=subject, device=device, reference=reference,
        model_name=str(label),
    )  # fmt: skip
    if key is not None:
        with _OPERATORS_LOCK:
            inv = _OPERATORS.setdefault(key, inv)
            while len(_OPERATORS) > _MAX_OPERATORS:
                _OPERATORS.popitem(last=False)
    return inv


def _operator_key(model, device, ch_names, arrays, labels):
    """Return what a prepared inverse depends on, ``arrays`` hashed.

    None for a model object (it may change between calls) or a model that
    does not exist (:func:`_resolve_model` reports it).
    """
    if isinstance(model, str | Path) and model not in _MODEL_NAMES:
        if not Path(model).expanduser().is_file():
            return None
    model_key = _model_key(model, device) if model is not None else ("none",)
    if model_key is None:
        return None
    digest = hashlib.blake2b(digest_size=20)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.view(np.uint8))
    return (*model_key, str(device), tuple(ch_names), *labels, digest.hexdigest())
