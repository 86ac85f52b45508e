"""``mne-mmnet benchmark``: score inverse methods on a held-out simulated test set."""

import argparse
import os
import sys

#: Seed of generated test sets: distinct from the simulators' default (0) used
#: for training data.
DEFAULT_TEST_SEED = 20_240_917


def add_parser(subparsers):
    """Add the ``benchmark`` sub-command to an argparse sub-parser collection."""
    p = subparsers.add_parser(
        "benchmark",
        help="score inverse methods on a simulated test set (Table I)",
        description=(
            "Evaluate inverse methods (LE, AUC, nMSE, PSNR, TE, time per sample) on "
            "a held-out simulated test set and write a Table I-style markdown table "
            "and a JSON file."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_test_set_arguments(p)
    _add_method_arguments(p)
    _add_output_arguments(p)
    p.add_argument(
        "--model-file", action="append", default=[], metavar="LABEL=PATH",
        help="also benchmark the MM-Net saved at PATH as row 'MM-Net (LABEL)'",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--list", action="store_true", help="list methods and exit")
    p.set_defaults(func=_run)
    return p


def _add_test_set_arguments(p):
    """Options of the test set: loaded (``--data``) or simulated."""
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data", metavar="DIR", help="load a test set written by `mne-mmnet simulate`"
    )
    src.add_argument(
        "--kind", choices=("sereega", "nmm"), default="sereega",
        help="simulate a test set of this kind (ignored with --data)",
    )  # fmt: skip
    p.add_argument(
        "-n", "--n-samples", type=int, default=None,
        help="test samples: the first N of --data (default: all), or N simulated "
        "(default: 1000)",
    )  # fmt: skip
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_TEST_SEED,
        help="test seed (ignored with --data)",
    )
    p.add_argument(
        "--snr", type=float, default=5.0, help="sensor SNR in dB (ignored with --data)"
    )
    p.add_argument(
        "--n-times", type=int, default=None,
        help="samples per trial (simulator default: 64 SEREEGA, 500 NMM; ignored "
        "with --data)",
    )  # fmt: skip


def _add_method_arguments(p):
    """Options naming the methods to run (``--model-file`` is added last)."""
    from .methods import DEFAULT_METHODS

    p.add_argument(
        "--methods", default=",".join(DEFAULT_METHODS),
        help="comma-separated registered methods (see --list), or 'all' (every "
        "registered method that runs on the test set's number of samples)",
    )  # fmt: skip
    p.add_argument(
        "--baselines-dir", metavar="DIR", default=None,
        help="register the learned baselines saved in DIR as <method>-<domain>.pt "
        "(tools/train_baselines.sh writes them)",
    )  # fmt: skip


def _add_output_arguments(p):
    """Options of the scoring, the results files and the suite."""
    from ..metrics import DEFAULT_ORDER

    p.add_argument("--order", type=int, default=DEFAULT_ORDER, help="LE neighbourhood")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--out", default="benchmarks/results", help="output folder")
    p.add_argument("--tag", default=None, help="file suffix (default: the kind)")
    p.add_argument("--scores", action="store_true", help="save per-sample scores")
    p.add_argument(
        "--append", action="store_true",
        help="keep the other rows of an existing results file for the same test set",
    )  # fmt: skip
    p.add_argument(
        "--suite", choices=("table1", "generalisation"), default="table1",
        help="'table1': one test set (--data or --kind); 'generalisation': every "
        "scenario of mne_mmnet.bench.generalisation.SCENARIOS, -n samples each "
        "(default 200), written to generalisation.md / .json",
    )  # fmt: skip
    p.add_argument(
        "--scenarios", default=None,
        help="comma-separated scenarios of the generalisation suite (default all)",
    )  # fmt: skip


def _load_data(args, fwd, adjacency):
    from ..simulation import load_simulation, simulate_nmm, simulate_sereega

    if args.data is not None:
        sim = load_simulation(args.data)
        if args.n_samples is not None and args.n_samples < len(sim):
            sim = sim.subset(range(args.n_samples))
        kind = sim.meta.get("kind")
        dataset = dict(source=str(args.data), n=len(sim), **_scalar_meta(sim.meta))
        return sim, kind if kind in ("sereega", "nmm") else None, dataset
    kwargs = dict(seed=args.seed, snr_db=args.snr, fwd=fwd, adjacency=adjacency)
    if args.n_times is not None:
        kwargs["n_times"] = args.n_times
    simulate = simulate_sereega if args.kind == "sereega" else simulate_nmm
    sim = simulate(1000 if args.n_samples is None else args.n_samples, **kwargs)
    dataset = dict(
        source="generated", kind=args.kind, n=len(sim), seed=args.seed,
        snr_db=args.snr, n_times=int(sim.eeg.shape[-1]), sfreq=float(sim.sfreq),
    )  # fmt: skip
    return sim, args.kind, dataset


def _scalar_meta(meta):
    """Keep the scalar (or list-of-scalar) entries of a simulation's metadata."""
    scalar = str | int | float | bool
    return {
        k: list(v) if isinstance(v, list | tuple) else v
        for k, v in meta.items()
        if isinstance(v, scalar)
        or (isinstance(v, list | tuple) and all(isinstance(x, scalar) for x in v))
    }


class _UsageError(Exception):
    """A bad command line: its message goes to stderr and the exit code is 2."""


def _run(args):
    from .methods import list_methods

    try:
        _register_extra_methods(args)
        registry = list_methods()
        if args.list:
            for name, spec in registry.items():
                sys.stdout.write(f"{name}: {spec.description}\n")
            return 0
        methods, run_all = _selected_methods(args, registry)
        if args.suite == "generalisation":
            return _run_generalisation(args, methods)
        return _run_table1(args, registry, methods, run_all)
    except _UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2


def _register_extra_methods(args):
    """Register the rows of ``--baselines-dir`` and ``--model-file``."""
    from .methods import _mmnet_factory, register_learned_baselines, register_method

    if args.baselines_dir is not None:
        try:
            register_learned_baselines(args.baselines_dir)
        except (FileNotFoundError, ValueError) as exc:
            raise _UsageError(str(exc)) from None
    for entry in args.model_file:
        label, sep, path = entry.partition("=")
        if not sep or not label or not path:
            raise _UsageError(f"--model-file must be LABEL=PATH, got {entry!r}.")
        register_method(
            f"MM-Net ({label})", _mmnet_factory, overwrite=True, model=path,
            description=f"MM-Net from {path}",
        )  # fmt: skip


def _selected_methods(args, registry):
    """Return the checked ``--methods`` and whether they were ``all``."""
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    run_all = methods == ["all"]
    if run_all:
        methods = list(registry)
    unknown = [m for m in methods if m not in registry]
    if unknown:
        raise _UsageError(f"Unknown method(s) {unknown}; see --list.")
    if len(set(methods)) != len(methods):
        raise _UsageError(f"--methods names a method more than once: {methods}.")
    if args.n_samples is not None and args.n_samples < 1:
        raise _UsageError("--n-samples must be >= 1.")
    return methods, run_all


def _run_table1(args, registry, methods, run_all):
    """Score ``methods`` on one test set and write its table and JSON file."""
    from mne.utils import use_log_level

    from ..forward import read_template_adjacency, read_template_forward
    from .run import run_benchmark
    from .table import check_appendable, write_results

    with use_log_level("warning"):
        fwd = read_template_forward()
        adjacency = read_template_adjacency()
        sim, kind, dataset = _load_data(args, fwd, adjacency)
        if run_all:
            methods = _runnable(methods, registry, sim.eeg.shape[-1])
        tag = args.tag or kind or "benchmark"
        if args.append:  # before the run, not after it
            try:
                check_appendable(
                    args.out, tag, dataset=dataset, order=args.order,
                    n_samples=len(sim),
                )  # fmt: skip
            except ValueError as exc:
                raise _UsageError(str(exc)) from None
        results = run_benchmark(
            sim, fwd, adjacency, methods=methods, order=args.order,
            batch_size=args.batch_size, progress=not args.no_progress,
        )  # fmt: skip
    paths = write_results(
        results, args.out, tag=tag, dataset=dataset, kind=kind, scores=args.scores,
        append=args.append, command=_command_line(args),
    )  # fmt: skip
    sys.stdout.write(paths["table"].read_text())
    sys.stdout.write(f"Wrote {paths['table']} and {paths['json']}\n")
    return 0


def _runnable(methods, registry, n_times):
    """Drop (with a note) the methods built for another number of samples."""
    skipped = [m for m in methods if not _runs_on(registry[m], n_times)]
    if skipped:
        sys.stderr.write(
            f"Skipping {skipped}: built for another number of time "
            f"samples than the test set's {n_times}.\n"
        )
    return [m for m in methods if m not in skipped]


def _run_generalisation(args, methods):
    """Run the suite scenario by scenario, rewriting the results after each."""
    import json
    from pathlib import Path

    from mne.utils import use_log_level

    from .generalisation import SCENARIOS, _check_scenarios, run_generalisation

    scenarios = list(SCENARIOS)
    if args.scenarios:
        scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    try:
        scenarios = _check_scenarios(scenarios)
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fname = out / f"{args.tag or 'generalisation'}.json"
    command = _command_line(args)
    n = args.n_samples or 200
    record = None
    if args.append and fname.is_file():  # rows of earlier runs on the same sets
        record = json.loads(fname.read_text())
        meta = record["_meta"]
        if not (meta["n"] == n and "seed" in meta):
            sys.stderr.write(f"{fname} holds another test set; not appended.\n")
            return 2
        meta.setdefault("commands", [meta.get("command")])
        meta["commands"].append(command)
    for name in scenarios:
        with use_log_level("warning"):
            try:
                results = run_generalisation(
                    methods, n=n, scenarios=[name], batch_size=args.batch_size,
                    progress=not args.no_progress,
                )  # fmt: skip
            except ValueError as exc:
                sys.stderr.write(f"{exc}\n")
                return 2
        if args.append and fname.is_file():  # another run may have appended since
            record = _latest_record(fname, command)
        if record is None:
            record = dict(_meta=dict(results["_meta"], command=command, scenarios={}))
        if record["_meta"]["seed"] != results["_meta"]["seed"]:
            sys.stderr.write(f"{fname} holds another test set; not appended.\n")
            return 2
        record["_meta"]["scenarios"].update(results["_meta"]["scenarios"])
        rows = {
            m: {k: v for k, v in e.items() if k != "scores"}
            for m, e in results[name]["methods"].items()
        }
        record.setdefault(name, {}).update(rows)
        table = _write_generalisation(record, fname)  # partial results survive
    sys.stdout.write(table)
    sys.stdout.write(f"Wrote {fname.with_suffix('.md')} and {fname}\n")
    return 0


def _latest_record(fname, command):
    """Read the results file as it is now, with ``command`` in its command list.

    Read again before each write, so that runs appending other scenarios to
    the same file at the same time keep each other's rows.
    """
    import json

    record = json.loads(fname.read_text())
    meta = record["_meta"]
    commands = meta.setdefault("commands", [meta.get("command")])
    if command not in commands:
        commands.append(command)
    return record


def _write_generalisation(record, fname):
    import json

    from .generalisation import format_generalisation

    table = format_generalisation(
        {k: v if k == "_meta" else {"methods": v} for k, v in record.items()}
    )
    meta = record["_meta"]
    head = "\n".join(f"`{c}`" for c in meta.get("commands", [meta["command"]]) if c)
    for path, text in (
        (fname.with_suffix(".md"), f"{head}\n\n{table}"),
        (fname, json.dumps(record, indent=1, default=float) + "\n"),
    ):
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(text)
        partial.replace(path)  # atomic: a concurrent reader never sees half a file
    return table


def _runs_on(spec, n_times):
    """Whether a registered method can run on ``n_times`` samples."""
    path = spec.options.get("path")
    if path is None:
        return True
    from ..pretrained import _read_model_file

    fixed = _read_model_file(path, "")["config"].get("n_times")
    return fixed is None or int(fixed) == int(n_times)


def _command_line(args):
    """Return the invocation as ``mne-mmnet benchmark ...`` (for the record)."""
    argv = list(getattr(args, "argv", None) or sys.argv[1:])
    if argv[:1] == ["benchmark"]:
        argv = argv[1:]
    return " ".join(["mne-mmnet", "benchmark", *argv])


def main(argv=None):
    """Run the benchmark as ``python -m mne_mmnet.bench``."""
    parser = argparse.ArgumentParser(prog="python -m mne_mmnet.bench")
    add_parser(parser.add_subparsers(dest="command", required=True))
    argv = ["benchmark", *(sys.argv[1:] if argv is None else argv)]
    args = parser.parse_args(argv)
    args.argv = argv
    return args.func(args)
