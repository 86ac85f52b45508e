"""``mne-mmnet invert``: Evoked file(s) in, source estimate files out."""

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
        default="sereega",
        help="pretrained name, model file, or 'classical' (untrained MM solver)",
    )
    parser.add_argument("--n-iter", type=int, default=None, help="MM iterations")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the solver")
    parser.set_defaults(func=_run)
    return parser


def _run(args):
    import mne

    from .forward import read_template_forward
    from .inverse import apply_mmnet_inverse

    evokeds = mne.read_evokeds(args.evoked, verbose=False)
    fwd = (
        read_template_forward(verbose=False)
        if args.fwd is None
        else mne.read_forward_solution(args.fwd, verbose=False)
    )
    model = None if args.model == "classical" else args.model
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for k, evoked in enumerate(evokeds):
        stc = apply_mmnet_inverse(
            evoked,
            fwd,
            model=model,
            n_iter=args.n_iter,
            device=args.device,
            seed=args.seed,
        )
        tag = _safe(evoked.comment) or f"evoked{k}"
        stem = out.with_name(f"{out.name}-{tag}")
        stc.save(stem, overwrite=True, verbose=False)
        print(f"{evoked.comment or tag}: wrote {stem}-lh.stc / -rh.stc")
    return 0


def _safe(text):
    """Condition name usable in a file name."""
    keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in (text or ""))
    return keep.strip("_")
