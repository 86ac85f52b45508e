"""The ``mne-mmnet`` command line: one entry point, one sub-command per task.

Each sub-command lives next to the code it drives, in a private ``_cli``
module exposing ``add_parser(subparsers)``; the parser it returns sets
``func`` to a callable taking the parsed ``argparse.Namespace``.
"""

import argparse
import importlib
import sys

from ._version import __version__

# (sub-command, module holding its ``add_parser``)
_SUBCOMMANDS = (
    ("demo", "mne_mmnet._demo"),
    ("simulate", "mne_mmnet.simulation._cli"),
    ("train", "mne_mmnet.training._cli"),
    ("benchmark", "mne_mmnet.bench._cli"),
    ("invert", "mne_mmnet._invert_cli"),
    ("sys-info", None),
)


def _sys_info(args):
    from .utils import sys_info

    sys_info()
    return 0


def build_parser():
    """Build the argument parser of the ``mne-mmnet`` command."""
    parser = argparse.ArgumentParser(
        prog="mne-mmnet",
        description="MM-Net EEG source imaging: simulate, train, benchmark, invert.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _SUBCOMMANDS:
        if module is None:
            p = sub.add_parser(name, help="print versions of mne-mmnet and deps")
            p.set_defaults(func=_sys_info)
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise  # a real import error inside an existing module
            continue  # sub-command not available in this build
        mod.add_parser(sub)
    return parser


def main(argv=None):
    """Run the ``mne-mmnet`` command line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    ret = args.func(args)
    return 0 if ret is None else int(ret)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
