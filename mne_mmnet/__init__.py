"""MM-Net: learned Majorization-Minimization solvers for EEG source imaging."""

from ._version import __version__
from .utils import sys_info

__all__ = ["__version__", "sys_info"]
