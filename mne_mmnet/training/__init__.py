"""Bilevel training of MM-Net: meta-loss, unrolled / JFB gradients, data parallel."""

from .distributed import DistributedContext, setup_distributed
from .loop import TrainResult, default_config, meta_gradient_step, train
from .losses import MetaLoss, denoising_loss, meta_loss

__all__ = [
    "DistributedContext",
    "MetaLoss",
    "TrainResult",
    "default_config",
    "denoising_loss",
    "meta_gradient_step",
    "meta_loss",
    "setup_distributed",
    "train",
]
