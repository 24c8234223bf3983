"""World Models (Ha & Schmidhuber, 2018): V (ConvVAE), M (MDN-RNN) and C (linear, CMA-ES)."""

__version__ = "0.1.0"
