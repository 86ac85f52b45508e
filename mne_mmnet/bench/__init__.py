"""Benchmark of inverse methods on simulated data (the paper's Table I)."""

from .methods import (
    DEFAULT_METHODS,
    MethodSpec,
    list_methods,
    make_method,
    register_learned_baselines,
    register_method,
)
from .run import run_benchmark
from .table import PAPER_TABLE_I, format_table, write_results

__all__ = [
    "DEFAULT_METHODS",
    "MethodSpec",
    "PAPER_TABLE_I",
    "format_table",
    "list_methods",
    "make_method",
    "register_learned_baselines",
    "register_method",
    "run_benchmark",
    "write_results",
]
