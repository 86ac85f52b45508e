"""Named pretrained models: the sha256 registry, the cache and the download.

Named models (``"sereega"``, ``"nmm"``, ...) are looked up first among the
files shipped inside the package (``mne_mmnet/data/models/``), which makes the
default work offline, then in a local cache filled by :mod:`pooch` from
``MNE_MMNET_MODELS_URL``. Every named file is checked against the sha256
registry shipped with the package (``mne_mmnet/data/models/registry.txt``).
This module does not import torch; reading and checking the weights is left
to :mod:`mne_mmnet.pretrained`.
"""

import json
import os
import shutil
from pathlib import Path

from mne.utils import _validate_type, get_config, logger, verbose

from ._version import __version__
from .utils import _sha256

_SHIPPED_DIR = Path(__file__).parent / "data" / "models"
_REGISTRY_NAME = "registry.txt"
# "<name>-unprojected": R-MM-Net, the same training without projection or
# descent safeguard (shipped for the ablation rows of the benchmark)
# "broad": the generalist default, trained on the broad simulator
_MODEL_NAMES = ("broad", "sereega", "nmm", "sereega-unprojected", "nmm-unprojected")
#: the model used when none is named
DEFAULT_MODEL = "broad"
# Placeholder: no release hosts the weights yet. Set MNE_MMNET_MODELS_URL to a
# directory URL (ending in "/") that serves "<name>.pt" files.
_DEFAULT_URL = "https://github.com/mne-tools/mne-mmnet/releases/download/models-v1/"
_URL_ENV = "MNE_MMNET_MODELS_URL"


def _read_registry(fname=None):
    """Registry ``{file name: sha256}`` (pooch's text format, 'name hash')."""
    fname = _SHIPPED_DIR / _REGISTRY_NAME if fname is None else Path(fname)
    registry = {}
    if not fname.is_file():
        return registry
    for line in fname.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, digest = line.split()[:2]
        registry[name] = digest.split(":", 1)[-1].lower()
    return registry


def _cache_dir(path):
    if path is None:
        base = get_config("MNE_DATA", os.path.join("~", "mne_data"))
        return Path(base).expanduser() / "mne_mmnet_models"
    _validate_type(path, "path-like", "path")
    return Path(path).expanduser()


def shipped_models():
    """Names of the pretrained models shipped inside this installation.

    Returns
    -------
    names : list of str
        The named models whose weights are in the package and registered, so
        that they load offline.
    """
    registry = _read_registry()
    return [
        name
        for name in _MODEL_NAMES
        if f"{name}.pt" in registry and (_SHIPPED_DIR / f"{name}.pt").is_file()
    ]


@verbose
def fetch_model(name, *, path=None, force_update=False, verbose=None):
    """Get the file of a named pretrained model, downloading it if needed.

    Parameters
    ----------
    name : str
        One of ``"broad"`` (the default: trained on the broad simulator for
        any recording), ``"sereega"`` (trained on SEREEGA-like extended sources, 64
        samples) or ``"nmm"`` (neural mass model spikes), or their R-MM-Net
        ablations ``"sereega-unprojected"`` / ``"nmm-unprojected"`` (trained
        and run without projection or descent safeguard).
    path : path-like | None
        Download cache; default ``<MNE_DATA>/mne_mmnet_models`` where
        ``MNE_DATA`` is MNE's config value (``~/mne_data`` when unset).
    force_update : bool
        Download again even if a valid copy is cached (the copy shipped in the
        package is then ignored).
    %(verbose)s

    Returns
    -------
    fname : pathlib.Path
        The verified model file.

    Raises
    ------
    ValueError
        If ``name`` is unknown, has no registered hash, or a file does not
        match its registered sha256.
    RuntimeError
        If the download fails.

    Notes
    -----
    Files are downloaded from the directory URL in the environment variable
    ``MNE_MMNET_MODELS_URL``; the built-in default is a placeholder until the
    weights are published.
    """
    import pooch

    _validate_type(name, str, "name")
    if name not in _MODEL_NAMES:
        raise ValueError(
            f"Unknown pretrained model {name!r}; available: {list(_MODEL_NAMES)}. "
            "To load your own weights pass their file path to load_model."
        )
    fname = f"{name}.pt"
    registry = _read_registry()
    if fname not in registry:
        raise ValueError(
            f"No sha256 registered for {fname!r} in {_SHIPPED_DIR / _REGISTRY_NAME}: "
            "the model has not been published for this version of mne-mmnet. "
            "Train one with `mne-mmnet train` and load it by path."
        )
    expected = registry[fname]
    shipped = _SHIPPED_DIR / fname
    if shipped.is_file() and not force_update:
        _check_card(name, expected)
        if _sha256(shipped) != expected:
            raise ValueError(
                f"The shipped model file {shipped} does not match its registered "
                "sha256: the installation is damaged. Reinstall mne-mmnet, or "
                f"download a copy with fetch_model({name!r}, force_update=True)."
            )
        logger.debug(f"Using the shipped model {shipped}")
        return shipped
    _check_card(name, expected)
    cache = _cache_dir(path)
    target = cache / fname
    # with force_update, download next to the cached copy and replace it only
    # once the new file is verified: a failing server keeps the good copy
    download_dir = cache / ".update" if force_update and target.exists() else cache
    base_url = os.environ.get(_URL_ENV, _DEFAULT_URL)
    if not base_url.endswith("/"):
        base_url += "/"
    fetcher = pooch.create(
        path=download_dir,
        base_url=base_url,
        registry={fname: f"sha256:{expected}"},
        retry_if_failed=1,
    )
    try:
        out = fetcher.fetch(fname, progressbar=logger.level <= 20)
    except ValueError as exc:  # pooch's hash check of the download
        raise ValueError(
            f"The file downloaded from {base_url}{fname} does not match its "
            f"registered sha256 ({expected}); it was not kept in {cache}. "
            f"Check {_URL_ENV} (currently {base_url!r}) points at weights for "
            f"mne-mmnet {__version__}, or upgrade mne-mmnet. Details: {exc}"
        ) from None
    except Exception as exc:  # network errors from requests / urllib
        kept = f" The cached copy {target} was kept." if target.exists() else ""
        raise RuntimeError(
            f"Could not download {fname} from {base_url}: {exc}. If you are "
            f"offline, copy the file into {cache} or set {_URL_ENV}.{kept}"
        ) from exc
    finally:
        if download_dir != cache and not any(download_dir.glob("*.pt")):
            shutil.rmtree(download_dir, ignore_errors=True)
    if download_dir != cache:
        os.replace(out, target)
        shutil.rmtree(download_dir, ignore_errors=True)
        out = target
    return Path(out)


def _check_card(name, expected):
    """Check that a shipped model card names the registered sha256."""
    card = _SHIPPED_DIR / f"{name}.json"
    if not card.is_file():
        return
    recorded = json.loads(card.read_text()).get("sha256")
    if recorded != expected:
        raise ValueError(
            f"The model card {card} records sha256 {recorded}, the registry "
            f"{expected}: the installation is inconsistent; reinstall mne-mmnet."
        )
