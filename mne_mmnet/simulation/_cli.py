"""``mne-mmnet simulate``: generate a sharded simulated data set."""

import time


def _snr(value):
    """Parse ``5`` or ``0,20`` (a range drawn per sample) or ``none``."""
    if value.lower() == "none":
        return None
    parts = [float(v) for v in value.split(",")]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return tuple(parts)
    raise ValueError(f"--snr takes a number, 'MIN,MAX' or 'none', got {value!r}")


def add_parser(subparsers):
    """Add the ``simulate`` sub-command to ``subparsers``."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate EEG data sets (SEREEGA-like or neural mass), sharded",
        description=(
            "Simulate source and EEG data on the template head model and write "
            "them as DIR/manifest.json + DIR/shard-NNNNN.npz. Rerunning the "
            "same command resumes: finished shards are kept."
        ),
    )
    parser.add_argument("--kind", choices=("sereega", "nmm"), default="sereega")
    parser.add_argument("--n", type=int, required=True, help="number of samples")
    parser.add_argument(
        "--snr",
        type=_snr,
        default=5.0,
        help="sensor SNR in dB, 'MIN,MAX' for a per-sample range (write "
        "--snr=-5,10 when MIN is negative), or 'none' (default 5)",
    )
    parser.add_argument("--noise", choices=("white", "pink"), default="white")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument(
        "--n-times",
        type=int,
        default=None,
        help="samples per window (default 64 for sereega, 500 for nmm)",
    )
    parser.add_argument(
        "--n-patches",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="patches per sample: N, or MIN MAX (default 1)",
    )
    nmm = parser.add_argument_group("neural mass options (--kind nmm)")
    nmm.add_argument("--n-jobs", type=int, default=None, help="parallel batches")
    nmm.add_argument("--backend", choices=("numpy", "torch"), default=None)
    nmm.add_argument("--device", default=None, help="torch device, e.g. cuda")
    nmm.add_argument("--dtype", choices=("float64", "float32"), default=None)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a directory generated with other parameters",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(func=_run)
    return parser


def _run(args):
    from .. import simulation

    kwargs = dict(snr_db=args.snr, noise=args.noise)
    if args.n_times is not None:
        kwargs["n_times"] = args.n_times
    if args.n_patches is not None:
        if len(args.n_patches) > 2:
            raise SystemExit("--n-patches takes one or two integers")
        patches = args.n_patches
        kwargs["n_patches"] = patches[0] if len(patches) == 1 else tuple(patches)
    for name in ("n_jobs", "backend", "device", "dtype"):
        value = getattr(args, name)
        if value is None:
            continue
        if args.kind != "nmm":
            flag = "--" + name.replace("_", "-")
            raise SystemExit(f"{flag} only applies to --kind nmm")
        kwargs[name] = value
    start = time.perf_counter()
    manifest = simulation.generate_dataset(
        args.out,
        args.kind,
        args.n,
        shard_size=args.shard_size,
        seed=args.seed,
        overwrite=args.overwrite,
        verbose="warning" if args.quiet else "info",
        **kwargs,
    )
    elapsed = time.perf_counter() - start
    if not args.quiet:
        print(
            f"{args.out}: {manifest['n']} {args.kind} samples in "
            f"{len(manifest['shards'])} shard(s); wrote "
            f"{len(manifest['regenerated'])} shard(s) in {elapsed:.1f} s"
        )
    return 0
