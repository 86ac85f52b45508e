"""Shared parameter documentation (a docdict, as MNE and mne-icalabel keep)."""

docdict = {}

docdict["fwd"] = """fwd : mne.Forward | MMNetInverse
    Fixed-orientation EEG forward model: the 994-region template of
    :func:`mne_mmnet.read_template_forward`; a vertex-level forward on
    fsaverage's ico-5 source space (vertices dropped by ``mindist`` are
    allowed while every region keeps one); a forward on an individual
    subject's cortical source space (e.g. from
    :func:`mne.morph_source_spaces`), mapped to the regions through the
    subject's spherical registration (see ``subjects_dir``); vertex-level
    forwards are summed over the template regions. Or an inverse prepared
    by :func:`mne_mmnet.make_mmnet_inverse`."""

docdict["subjects_dir"] = """subjects_dir : path-like | None
    FreeSurfer subjects folder holding the subject of ``fwd`` (its
    ``surf/?h.sphere.reg``), needed only when ``fwd`` is on an individual
    subject's source space. ``None``: MNE's ``SUBJECTS_DIR``."""

docdict["model"] = """model : str | path-like | MMNet | None
    ``"broad"`` (default: trained on the broad simulator, for any
    recording), ``"sereega"`` or ``"nmm"`` (the paper's Table I replicas),
    ``"sereega-unprojected"`` / ``"nmm-unprojected"`` (R-MM-Net ablations,
    without the descent guarantee), a path to a saved model, an
    :class:`mne_mmnet.MMNet`, or ``None`` for the hand-crafted MM solver (no
    learned parts). Named models and paths are loaded once per process."""

docdict["device"] = """device : str | torch.device | None
    Where to compute: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``None`` uses
    CUDA when available, else the CPU."""

docdict["seed"] = """seed : int | None
    Seed of the random start (models that start from a linear inverse, as
    the shipped ones do, are deterministic)."""

docdict["n_iter"] = """n_iter : int | None
    Number of MM iterations (1 to 10,000); ``None`` uses the model's own
    setting (3 for ``"broad"``, 10 for the Table I replicas)."""

docdict["guarantee"] = """guarantee : 'checked' | 'certified' | None
    How each MM step is made safe; ``None`` uses the model's own setting
    (``'certified'`` for ``"broad"``, ``'checked'`` for the Table I
    replicas). ``'checked'``: a step is taken when its energy, evaluated,
    did not rise. ``'certified'``: each step is first cut to the minimiser of
    a quadratic majorant valid on its whole segment, so every step taken is
    a majorization-minimization step (about a tenth slower; the steps are
    shorter than the checked ones: see the README's safeguard table for both
    modes' step sizes and accuracy)."""

docdict["y_L"] = """y : torch.Tensor, shape (batch, n_channels, n_times)
    Data, referenced like ``L``.
L : torch.Tensor, shape (n_channels, n_sources)
    Leadfield."""


def _indent(text, indent):
    lines = text.splitlines()
    return "\n".join([lines[0]] + [indent + line if line else "" for line in lines[1:]])


def fill_doc(func):
    """Fill ``%(key)s`` entries of ``func.__doc__`` from :data:`docdict`.

    Unknown keys (MNE's ``%(verbose)s``) are left for :func:`mne.verbose`.
    """
    doc = func.__doc__
    if not doc:
        return func
    lines = doc.splitlines()
    body = [line for line in lines[1:] if line.strip()]
    indent = min((len(line) - len(line.lstrip()) for line in body), default=0)
    mapping = _Passthrough({k: _indent(v, " " * indent) for k, v in docdict.items()})
    func.__doc__ = doc % mapping
    return func


class _Passthrough(dict):
    def __missing__(self, key):
        return f"%({key})s"
