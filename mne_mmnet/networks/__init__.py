"""Neural networks of MM-Net: the autoencoder prior and the curvature model."""

from .autoencoder import (
    SoftReLUAutoencoder,
    conv_operator_norm,
    softrelu,
    softrelu_grad,
    softrelu_hess,
)

__all__ = [
    "SoftReLUAutoencoder",
    "conv_operator_norm",
    "softrelu",
    "softrelu_grad",
    "softrelu_hess",
]
