"""Pretrained MM-Net weights: save, fetch (pooch) and load without pickle.

A model file is a :func:`torch.save` archive of plain containers only (str,
numbers, lists, dicts and tensors): the format tag, the model's JSON config,
free-form JSON metadata and the state dict. It is read back with
``torch.load(weights_only=True)``, which refuses any pickled object, so a
model file cannot execute code.

Named models (``"sereega"``, ``"nmm"``) are looked up first among the files
shipped inside the package (``mne_mmnet/data/models/``), which makes the
default work offline, then in a local cache filled by :mod:`pooch` from
``MNE_MMNET_MODELS_URL``. Every named file is checked against the sha256
registry shipped with the package (``mne_mmnet/data/models/registry.txt``);
the registry, the cache and the download live in ``mne_mmnet._fetch``.
"""

import json
import os
import shutil
from pathlib import Path

import torch
from mne.utils import _check_option, _validate_type, logger, verbose

from . import _fetch

# defined in _fetch, importable from here too (the package's modules, tools/
# and the tests use them as mne_mmnet.pretrained.<name>)
from ._fetch import (  # noqa: F401
    _MODEL_NAMES,
    _SHIPPED_DIR,
    DEFAULT_MODEL,
    _read_registry,
    fetch_model,
    shipped_models,
)
from ._version import __version__
from .architectures import build_model
from .networks.base import LearnedSolver
from .utils import _get_device, _sha256

_FORMAT = "mne-mmnet-model"
_FORMAT_VERSION = 1


def _fix_hint(name, fname):
    return (
        f"Delete {fname} and call fetch_model({name!r}, force_update=True) (or "
        "load_model again) to download a fresh copy."
    )


def _json_clean(obj, name):
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be JSON serialisable: {exc}") from None


@verbose
def save_model(
    model, fname, *, metadata=None, overwrite=False, weights_dtype=None, verbose=None
):
    """Save an MM-Net (config, metadata and weights) without pickled objects.

    Parameters
    ----------
    model : MMNet | LearnedSolver
        The model (MM-Net or another
        :class:`mne_mmnet.networks.base.LearnedSolver`, e.g. a learned
        baseline).
    fname : path-like
        Output file (``.pt``).
    metadata : dict | None
        JSON-serialisable information kept with the weights (training data,
        arguments, validation scores).
    overwrite : bool
        Replace an existing file.
    weights_dtype : None | "float16"
        ``"float16"`` stores the floating-point weights in half precision
        (half the file size; they are rounded once, and the loaded model runs
        in the precision it is moved to). ``None`` keeps their dtype.
    %(verbose)s

    Returns
    -------
    fname : pathlib.Path
        The file written.
    """
    _validate_type(model, LearnedSolver, "model", "MMNet or another LearnedSolver")
    _check_option("weights_dtype", weights_dtype, (None, "float16"))
    _validate_type(fname, "path-like", "fname")
    _validate_type(metadata, (dict, None), "metadata")
    fname = Path(fname).expanduser()
    if fname.exists() and not overwrite:
        raise FileExistsError(f"{fname} exists; pass overwrite=True to replace it.")
    content = dict(
        format=_FORMAT,
        format_version=_FORMAT_VERSION,
        package_version=__version__,
        config=_json_clean(model.config, "model.config"),
        metadata=_json_clean(metadata or {}, "metadata"),
        state_dict={
            k: _stored(v, weights_dtype) for k, v in model.state_dict().items()
        },
    )
    _write_model_file(content, fname)
    logger.info(f"Saved {type(model).__name__} weights to {fname}")
    return fname


def _write_model_file(content, fname):
    """Write a model file atomically (a reader never sees half a file)."""
    fname.parent.mkdir(parents=True, exist_ok=True)
    tmp = fname.with_name(f".{fname.name}.{os.getpid()}.tmp")
    try:
        torch.save(content, tmp)
        os.replace(tmp, fname)
    finally:
        if tmp.exists():
            tmp.unlink()


def _replace_metadata(fname, metadata):
    """Rewrite a model file's metadata; its weights stay as stored."""
    fname = Path(fname)
    content = _read_model_file(fname, "")
    content["metadata"] = _json_clean(metadata, "metadata")
    _write_model_file(content, fname)


def _stored(tensor, weights_dtype):
    tensor = tensor.detach().cpu().clone()
    if weights_dtype == "float16" and torch.is_floating_point(tensor):
        return tensor.to(torch.float16)
    return tensor


def _read_model_file(fname, hint):
    try:
        content = torch.load(fname, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"Could not read MM-Net weights from {fname}: the file is corrupt, "
            "truncated, not an mne-mmnet model file, or holds pickled objects "
            f"(refused: files are loaded with weights_only=True). {hint} "
            f"Details: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(content, dict) or content.get("format") != _FORMAT:
        raise ValueError(f"{fname} is not an mne-mmnet model file. {hint}")
    if content.get("format_version") != _FORMAT_VERSION:
        raise ValueError(
            f"{fname} has model format version {content.get('format_version')}, "
            f"this mne-mmnet ({__version__}) reads version {_FORMAT_VERSION}; "
            "upgrade mne-mmnet or re-save the model."
        )
    config = content.get("config")
    gate = config.get("gate") if isinstance(config, dict) else None
    if isinstance(gate, dict):  # saved before gates recorded their features
        gate.setdefault("features", 1)
    return content


@verbose
def load_model(model, *, device=None, verbose=None):
    """Load an MM-Net in evaluation mode.

    Parameters
    ----------
    model : str | path-like | MMNet | LearnedSolver
        A pretrained model name (``"sereega"``, ``"nmm"``, see
        :func:`fetch_model`), the path of a file written by
        :func:`save_model`, or a model (returned as is).
    device : str | torch.device | None
        Where to put the model (default CUDA when available, else CPU).
    %(verbose)s

    Returns
    -------
    model : MMNet | LearnedSolver
        The model in eval mode (the class its file's config names);
        ``model.metadata`` holds the file's metadata.

    Raises
    ------
    ValueError
        If the file is corrupt, holds pickled objects, or its weights do not
        match its config.
    """
    device = _get_device(device)
    if isinstance(model, LearnedSolver):
        return model.to(device).eval()
    _validate_type(model, ("path-like",), "model", "name, path or MMNet")
    if isinstance(model, str) and model in _MODEL_NAMES and not Path(model).exists():
        fname = fetch_model(model)
        hint = _fix_hint(model, fname)
    else:
        fname = Path(model).expanduser()
        if not fname.is_file():
            raise FileNotFoundError(
                f"No model file {fname}; pass an existing path or one of the "
                f"pretrained names {list(_MODEL_NAMES)}."
            )
        hint = "Re-save it with mne_mmnet.pretrained.save_model."
    content = _read_model_file(fname, hint)
    _check_weights(content, fname, hint)
    try:
        net = build_model(content["config"])
        net.load_state_dict(content["state_dict"], strict=True)
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise ValueError(
            f"The weights in {fname} do not match their config: {exc}. {hint}"
        ) from None
    net.metadata = content.get("metadata", {})
    logger.info(f"Loaded MM-Net from {fname}")
    return net.to(device).eval()


#: largest weight magnitude accepted (trained weights are O(1))
_MAX_WEIGHT = 1e4


def _check_weights(content, fname, hint):
    """Shapes against the config (built on the meta device: no memory), values."""
    state = content.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"{fname} holds no state dict. {hint}")
    try:
        with torch.device("meta"):
            expected = build_model(content["config"]).state_dict()
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{fname} has an invalid config: {exc}. {hint}") from None
    wrong = [
        f"{k}: {tuple(v.shape)} in the file, {tuple(expected[k].shape)} expected"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    missing = sorted(set(expected) - set(state))
    if wrong or missing:
        found = "; ".join(wrong[:3] + [f"missing {missing[:3]}"] * bool(missing))
        raise ValueError(
            f"The weights in {fname} do not match their config: {found}. {hint}"
        )
    for key, value in state.items():
        if not torch.is_floating_point(value):
            continue
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{fname} has NaN or inf weights in {key!r}. {hint}")
        if value.numel() and float(value.abs().max()) > _MAX_WEIGHT:
            raise ValueError(
                f"{fname} has implausible weights in {key!r} (|w| up to "
                f"{float(value.abs().max()):.3g}): the file is corrupt. {hint}"
            )


def _install_shipped_model(src, name, *, data_dirs=(), keep_training_data=False):
    """Copy a trained model into the package, register its sha256 and card.

    The card ``<name>.json`` beside the weights records the config, the
    training arguments and last validation scores (from the file's metadata),
    the manifests of the training data (of ``data_dirs``, or those of the
    card it replaces with ``keep_training_data=True``) and the sha256 of the
    weights.
    """
    if name not in _MODEL_NAMES:
        raise ValueError(f"name must be one of {_MODEL_NAMES}, got {name!r}.")
    content = _read_model_file(src, "")  # refuse anything load_model would refuse
    shipped_dir = _fetch._SHIPPED_DIR  # read here: a patched value takes effect
    shipped_dir.mkdir(parents=True, exist_ok=True)
    dest = shipped_dir / f"{name}.pt"
    card_file = shipped_dir / f"{name}.json"
    kept = {}
    if keep_training_data and card_file.is_file():
        kept = json.loads(card_file.read_text()).get("training_data", {})
    shutil.copyfile(src, dest)
    registry = _fetch._read_registry()
    registry[dest.name] = _sha256(dest)
    lines = ["# mne-mmnet pretrained models: file name, sha256 (pooch format)"]
    lines += [f"{k} sha256:{v}" for k, v in sorted(registry.items())]
    (shipped_dir / _fetch._REGISTRY_NAME).write_text("\n".join(lines) + "\n")
    manifests = {}
    for data_dir in data_dirs:
        manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
        manifests[Path(data_dir).name] = manifest
    card = dict(
        name=name,
        file=dest.name,
        sha256=registry[dest.name],
        mne_mmnet_version=__version__,
        config=content["config"],
        metadata=content.get("metadata", {}),
        training_data=dict(kept, **manifests),
    )
    card_file.write_text(json.dumps(card, indent=1) + "\n")
    return dest
