"""Neural networks of MM-Net: the autoencoder prior, the curvature, the start gate."""

from ._expansions import TaylorExpansions
from .autoencoder import (
    SoftReLUAutoencoder,
    conv_operator_norm,
    softrelu,
    softrelu_grad,
    softrelu_hess,
)
from .curvature import ConvLSTMCell1d, CurvatureModel
from .gate import StartGate, start_features
from .mmnet import MMNet

__all__ = [
    "ConvLSTMCell1d",
    "CurvatureModel",
    "MMNet",
    "SoftReLUAutoencoder",
    "StartGate",
    "TaylorExpansions",
    "conv_operator_norm",
    "softrelu",
    "softrelu_grad",
    "softrelu_hess",
    "start_features",
]
