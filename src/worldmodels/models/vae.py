"""V: the paper's convolutional VAE on 64x64x3 frames.

Notation: B batch, Z latent size. Frames are float in [0, 1], shape (B, 3, 64, 64).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ConvVAE(nn.Module):
    """Encoder: 4 convs (32, 64, 128, 256 filters, 4x4, stride 2, ReLU, valid) -> 2x2x256 -> mu, logvar.
    Decoder: dense z -> 1024 as 1x1x1024 -> deconvs 128 (5x5), 64 (5x5), 32 (6x6), 3 (6x6, sigmoid).
    """

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, 2), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, 2), nn.ReLU(),
            nn.Conv2d(128, 256, 4, 2), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        self.fc_mu = nn.Linear(1024, z_dim)
        self.fc_logvar = nn.Linear(1024, z_dim)
        self.fc_dec = nn.Linear(z_dim, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, 2), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, 2), nn.Sigmoid(),
        )  # fmt: skip

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 64, 64) -> mu (B, Z), logvar (B, Z)."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, Z) -> (B, 3, 64, 64) in [0, 1]."""
        return self.decoder(self.fc_dec(z).view(-1, 1024, 1, 1))

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, 3, 64, 64) -> reconstruction (B, 3, 64, 64), mu (B, Z), logvar (B, Z)."""
        mu, logvar = self.encode(x)
        z = sample_z(mu, logvar, generator)
        return self.decode(z), mu, logvar


def sample_z(
    mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image: (B, Z) -> (B,)."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def vae_loss(
    x: torch.Tensor,
    recon: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_tolerance: float,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference code's loss: per-image summed squared error + max(KL, kl_tolerance * Z), batch mean.
    `weights` (1, 1, 64, 64), if given, multiplies each pixel's squared error (vae.indicator_weight).

    Returns (loss, recon, kl), each a scalar; kl is before the floor (what the model actually pays).
    """
    err = F.mse_loss(recon.float(), x.float(), reduction="none")
    recon_err = (err if weights is None else err * weights).flatten(1).sum(1)
    kl = kl_divergence(mu.float(), logvar.float())
    floored = torch.clamp(kl, min=kl_tolerance * mu.shape[1])
    return (recon_err + floored).mean(), recon_err.mean(), kl.mean()


def frames_to_tensor(frames: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, 64, 64, 3) -> float (B, 3, 64, 64) in [0, 1]."""
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


@torch.no_grad()
def reconstruct(
    model: ConvVAE, frames: np.ndarray, device: torch.device | str = "cpu"
) -> np.ndarray:
    """uint8 frames (N, 64, 64, 3) -> their reconstructions through mu, uint8 (N, 64, 64, 3)."""
    model.eval()
    x = frames_to_tensor(torch.from_numpy(np.ascontiguousarray(frames)).to(device))
    mu, _ = model.encode(x)
    out = model.decode(mu).permute(0, 2, 3, 1).clamp(0, 1).mul(255).round().byte()
    return out.cpu().numpy()
