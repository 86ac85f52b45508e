"""Neural networks of MM-Net: the autoencoder prior and the curvature model."""

from .autoencoder import (
    SoftReLUAutoencoder,
    conv_operator_norm,
    softrelu,
    softrelu_grad,
    softrelu_hess,
)
from .curvature import ConvLSTMCell1d, CurvatureModel
from .mmnet import MMNet

__all__ = [
    "ConvLSTMCell1d",
    "CurvatureModel",
    "MMNet",
    "SoftReLUAutoencoder",
    "conv_operator_norm",
    "softrelu",
    "softrelu_grad",
    "softrelu_hess",
]
