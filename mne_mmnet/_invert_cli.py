"""``mne-mmnet invert``: Evoked file(s) in, source estimate files out."""

import warnings
from pathlib import Path


def add_parser(subparsers):
    """Register the ``invert`` sub-command."""
    parser = subparsers.add_parser(
        "invert",
        help="apply MM-Net to the evoked responses of a -ave.fif file",
        description=(
            "Read every Evoked of a -ave.fif file, estimate its sources with "
            "MM-Net on the fsaverage template (or the forward model given) and "
            "write one source estimate per condition."
        ),
    )
    parser.add_argument("evoked", help="path of a -ave.fif file")
    parser.add_argument(
        "--out",
        required=True,
        help="output stem; writes OUT-<condition>-lh.stc/-rh.stc",
    )
    parser.add_argument(
        "--fwd", default=None, help="forward model file (default: the template)"
    )
    parser.add_argument(
        "--model",
        default=None,
        help="pretrained name (default: the package's default model), model "
        "file, or 'classical' (untrained MM solver)",
    )
    parser.add_argument("--n-iter", type=int, default=None, help="MM iterations")
    parser.add_argument(
        "--guarantee", choices=("checked", "certified"), default=None,
        help="checked: steps whose energy did not rise (the models' setting); "
        "certified: only steps under a majorant of their segment (shorter steps)",
    )  # fmt: skip
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the solver")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log progress; tracebacks on errors"
    )
    parser.set_defaults(func=_run)
    return parser


class _Refused(Exception):
    """A bad input: one line on stderr, exit status 2."""


def _run(args):
    import sys

    try:
        return _invert(args)
    except (_Refused, ValueError, TypeError, OSError, RuntimeError) as exc:
        if args.verbose:
            raise
        sys.stderr.write(f"mne-mmnet invert: {exc}\n")
        return 2


def _read_evokeds(fname):
    import mne

    path = Path(fname)
    if not path.is_file():
        raise _Refused(f"no file {fname}")
    if not path.name.endswith((".fif", ".fif.gz")):
        raise _Refused(f"{fname} is not a FIF file; pass an -ave.fif file")
    hint = "for raw or epochs files, average them first (epochs.average().save(...))"
    try:
        with warnings.catch_warnings():  # file-name conventions: not our concern
            warnings.simplefilter("ignore", RuntimeWarning)
            evokeds = mne.read_evokeds(path, proj=False, verbose=False)
    except Exception as exc:  # mne raises several kinds on non-Evoked FIF
        raise _Refused(
            f"{fname} holds no Evoked data ({type(exc).__name__}: {exc}); {hint}"
        ) from None
    if not evokeds:
        raise _Refused(f"{fname} holds no Evoked data; {hint}")
    return evokeds


def _outputs(evokeds, out):
    """One distinct file stem per condition."""
    stems, seen = [], {}
    for k, evoked in enumerate(evokeds):
        tag = _safe(evoked.comment) or f"evoked{k}"
        if tag in seen:
            seen[tag] += 1
            tag = f"{tag}-{seen[tag]}"
        else:
            seen[tag] = 0
        stems.append(out.with_name(f"{out.name}-{tag}"))
    return stems


def _invert(args):
    import mne

    from .forward import read_template_forward
    from .inverse import apply_mmnet_inverse, make_mmnet_inverse
    from .inverse._api import _referenced

    verbose = "info" if args.verbose else "warning"
    evokeds = _read_evokeds(args.evoked)
    if args.fwd is None:
        fwd = read_template_forward(verbose=False)
    elif not Path(args.fwd).is_file():
        raise _Refused(f"no forward file {args.fwd}")
    else:
        fwd = mne.read_forward_solution(args.fwd, verbose=False)
    from .pretrained import DEFAULT_MODEL

    model = {"classical": None, None: DEFAULT_MODEL}.get(args.model, args.model)
    out = Path(args.out)
    stems = _outputs(evokeds, out)
    existing = [
        f"{s}-{h}.stc" for s in stems for h in ("lh", "rh")
        if Path(f"{s}-{h}.stc").exists()
    ]  # fmt: skip
    if existing and not args.overwrite:
        raise _Refused(
            f"{existing[0]} exists ({len(existing)} output file(s) in all); pass "
            "--overwrite to replace them"
        )
    # every condition is checked before anything is written
    inverses = []
    for k, evoked in enumerate(evokeds):
        name = f"condition {k} ({evoked.comment or 'no comment'})"
        inv = make_mmnet_inverse(
            evoked.info, fwd, model, device=args.device, verbose=verbose
        )
        picks = inv._check_info(evoked.info, name)
        _referenced(evoked.data[picks].astype(float), inv, name)
        inverses.append(inv)
    out.parent.mkdir(parents=True, exist_ok=True)
    for evoked, inv, stem in zip(evokeds, inverses, stems):
        stc = apply_mmnet_inverse(
            evoked, inv, n_iter=args.n_iter, guarantee=args.guarantee,
            seed=args.seed, verbose=verbose,
        )  # fmt: skip
        stc.save(stem, overwrite=True, verbose=False)
        print(f"{evoked.comment or stem.name}: wrote {stem}-lh.stc / -rh.stc")
    return 0


def _safe(text):
    """Condition name usable in a file name."""
    keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in (text or ""))
    return keep.strip("_")
