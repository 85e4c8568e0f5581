"""Triplane VAE of semantic occupancy (X-Scene Sec. 3.2, appendix A.2).

    labels uint8 [B, X, Y, Z] ──embed──▶ 3D convs ──▶ mean+max over z / y / x ──▶ 2D convs per plane
        ──▶ triplane (xy [B,C,X',Y'], xz [B,C,X',Z'], yz [B,C,Y',Z'])               (encode)
    triplane ──2D convs per plane──▶ features; for each query point p:
        triplane deformable attention (paper eq. 2): from PE(p), K 2D offsets + softmax weights per plane,
        bilinear samples at proj(p) + offsets, weighted sum over K and over the three planes
        ──▶ [features, PE(p)] ──MLP──▶ class logits [B, N, 18]                         (decode)

Points are in grid-normalised coordinates: each axis maps the grid's extent to [-1, 1], voxel i's centre
sits at (2 i + 1) / n - 1 (align_corners=False everywhere, so a plane of any resolution covers the same
extent). `voxel_centers(grid_shape)` gives them all.

The configuration is the constructor's keyword arguments; `PRESETS` holds the named ones (`tiny` for
this CPU, `paper` for the paper's sizes) and is the only place their numbers live:

    vae = TriplaneVAE.from_preset("tiny")
    planes = vae.encode(labels)                 # Planes(xy, xz, yz), batched
    logits = vae.decode(planes, points)         # [B, N, 18]
    recon = vae.reconstruct(labels)             # uint8 [B, X, Y, Z]
    vae.save_pretrained(dir); TriplaneVAE.from_pretrained(dir)
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import semantics
from ..types.occupancy import Occupancy, Triplane
from .pretrained import Pretrained

# Submodules that map labels to the latent planes: the latent space a diffusion model is trained in is
# theirs alone, so the decoder can be retrained without invalidating that model (data.latent_dataset.vae_hash).
ENCODER_MODULES = ("embed", "stem", "down", "enc_planes")
# Constructor settings that shape the latent (the rest only shape the decoder).
ENCODER_CONFIG = ("grid_shape", "plane_shape", "num_classes", "embed_dim", "encoder_channels", "latent_channels",
                  "variational")

PRESETS: dict[str, dict] = {
    # trains on a 2-core CPU: planes at the paper's resolution, 8 channels, a light encoder and decoder
    "tiny": dict(grid_shape=(200, 200, 16), plane_shape=(100, 100, 16), num_classes=semantics.NUM_CLASSES,
                 embed_dim=8, encoder_channels=(16, 16), latent_channels=8, decoder_channels=32,
                 num_offsets=4, mlp_width=128, mlp_depth=3, pe_freqs=6, variational=False, kl_weight=1e-6),
    # the paper's sizes: (100, 100, 16) planes with 16 channels, decoder MLP 4 x 256
    "paper": dict(grid_shape=(200, 200, 16), plane_shape=(100, 100, 16), num_classes=semantics.NUM_CLASSES,
                  embed_dim=16, encoder_channels=(32, 64), latent_channels=16, decoder_channels=64,
                  num_offsets=4, mlp_width=256, mlp_depth=4, pe_freqs=6, variational=False, kl_weight=1e-6),
}



class Planes(NamedTuple):
    """A batch of triplanes: xy [B, C, X', Y'], xz [B, C, X', Z'], yz [B, C, Y', Z']."""

    xy: torch.Tensor
    xz: torch.Tensor
    yz: torch.Tensor

    def to_triplanes(self) -> list[Triplane]:
        """One `Triplane` per batch element (detached)."""
        return [Triplane(self.xy[i].detach(), self.xz[i].detach(), self.yz[i].detach()) for i in range(self.xy.shape[0])]

    @classmethod
    def from_triplanes(cls, triplanes: Sequence[Triplane]) -> "Planes":
        return cls(*(torch.stack([getattr(t, k) for t in triplanes]) for k in ("xy", "xz", "yz")))


def voxel_centers(grid_shape: Sequence[int], device=None) -> torch.Tensor:
    """Grid-normalised coordinates of all voxel centres: float [X*Y*Z, 3] in x-major order (the order of
    labels.reshape(-1))."""
    axes = [(torch.arange(n, device=device, dtype=torch.float32) * 2 + 1) / n - 1 for n in grid_shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def index_to_points(index: torch.Tensor, grid_shape: Sequence[int]) -> torch.Tensor:
    """Voxel indices int [..., 3] -> grid-normalised centre coordinates float [..., 3]."""
    n = torch.as_tensor(list(grid_shape), dtype=torch.float32, device=index.device)
    return (index.float() * 2 + 1) / n - 1


def positional_encoding(points: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """[p, sin(2^k p), cos(2^k p) for k < n_freqs]: float [..., 3] -> [..., 3 + 6 n_freqs]."""
    freqs = 2.0 ** torch.arange(n_freqs, device=points.device, dtype=points.dtype)
    ang = points[..., None, :] * freqs[:, None]  # [..., F, 3]
    return torch.cat([points, ang.sin().flatten(-2), ang.cos().flatten(-2)], dim=-1)


def _groups(c: int) -> int:
    return math.gcd(c, 8)


class ResBlock3d(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv3d(c, c, 3, padding=1, padding_mode="replicate"),
                                  nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv3d(c, c, 3, padding=1, padding_mode="replicate"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResBlock2d(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(_groups(c_in), c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="replicate"),
                                  nn.GroupNorm(_groups(c_out), c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1, padding_mode="replicate"))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class TriplaneDeformableAttention(nn.Module):
    """Paper eq. 2. For a query point p: per plane, K offsets (in plane cells) and K softmax weights are a
    linear function of PE(p); plane features are sampled bilinearly at proj(p) + offset_k and summed with
    the weights, then summed over the three planes.

    The offset layer starts at zero, so at initialisation this is the plain bilinear triplane sample.
    """

    PLANE_AXES = ((0, 1), (0, 2), (1, 2))  # xy, xz, yz: which point coordinates index (rows, columns)

    def __init__(self, pe_dim: int, num_offsets: int) -> None:
        super().__init__()
        self.k = num_offsets
        self.offsets = nn.Linear(pe_dim, 3 * num_offsets * 2)
        self.weights = nn.Linear(pe_dim, 3 * num_offsets)
        nn.init.zeros_(self.offsets.weight)
        nn.init.zeros_(self.offsets.bias)

    def forward(self, planes: Sequence[torch.Tensor], points: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
        """planes: 3 x [B, F, H, W]; points [B, N, 3] grid-normalised; pe [B, N, D]. Returns [B, N, F]."""
        b, n, _ = points.shape
        off = self.offsets(pe).view(b, n, 3, self.k, 2)
        w = self.weights(pe).view(b, n, 3, self.k).softmax(-1)
        out = 0
        for i, (plane, (r, c)) in enumerate(zip(planes, self.PLANE_AXES)):
            h, wd = plane.shape[-2:]
            scale = points.new_tensor([2.0 / h, 2.0 / wd])  # one plane cell in normalised units
            base = points[..., [r, c]]                                          # [B, N, 2] (row, col)
            loc = base[:, :, None, :] + off[:, :, i] * scale                    # [B, N, K, 2]
            # grid_sample wants (x=col, y=row)
            feat = F.grid_sample(plane, loc.flip(-1), mode="bilinear", padding_mode="border", align_corners=False)  # [B, F, N, K]
            out = out + (feat * w[:, None, :, i, :]).sum(-1)
        return out.transpose(1, 2)  # [B, N, F]


class TriplaneVAE(Pretrained, nn.Module):
    """Triplane (variational) autoencoder of semantic occupancy.

    grid_shape: voxels (X, Y, Z) of the occupancy; plane_shape: (X', Y', Z') of the triplane, each a
    power-of-two division of grid_shape; num_classes: 18 (Occ3D ids, free included); embed_dim: class
    embedding width; encoder_channels: 3D conv widths, the first at full resolution, then one per
    downsampling step (the last is repeated if there are more steps); latent_channels: C of each plane;
    decoder_channels: feature width of the decoder's plane convs; num_offsets: K of the deformable
    attention; mlp_width / mlp_depth: the implicit decoder MLP (hidden width, hidden layers); pe_freqs:
    positional-encoding frequencies; variational: predict mean and log-variance and sample (KL with
    kl_weight in training) instead of a deterministic, tanh-bounded latent.
    """

    def __init__(self, grid_shape: Sequence[int] = (200, 200, 16), plane_shape: Sequence[int] = (100, 100, 16),
                 num_classes: int = semantics.NUM_CLASSES, embed_dim: int = 8, encoder_channels: Sequence[int] = (16, 16),
                 latent_channels: int = 8, decoder_channels: int = 32, num_offsets: int = 4, mlp_width: int = 128,
                 mlp_depth: int = 3, pe_freqs: int = 6, variational: bool = False, kl_weight: float = 1e-6) -> None:
        super().__init__()
        self.config = dict(grid_shape=[int(v) for v in grid_shape], plane_shape=[int(v) for v in plane_shape],
                           num_classes=int(num_classes), embed_dim=int(embed_dim),
                           encoder_channels=[int(v) for v in encoder_channels], latent_channels=int(latent_channels),
                           decoder_channels=int(decoder_channels), num_offsets=int(num_offsets), mlp_width=int(mlp_width),
                           mlp_depth=int(mlp_depth), pe_freqs=int(pe_freqs), variational=bool(variational),
                           kl_weight=float(kl_weight))
        self.grid_shape = tuple(self.config["grid_shape"])
        self.plane_shape = tuple(self.config["plane_shape"])
        factors = []
        for g, p in zip(self.grid_shape, self.plane_shape):
            f = g // p if p and g % p == 0 else 0
            if f < 1 or f & (f - 1):
                raise ValueError(f"plane_shape {self.plane_shape} must divide grid_shape {self.grid_shape} by powers of two")
            factors.append(f)
        if not encoder_channels or mlp_depth < 1 or num_offsets < 1:
            raise ValueError("encoder_channels must be non-empty, mlp_depth and num_offsets at least 1")
        self.num_classes = int(num_classes)
        self.variational = bool(variational)
        self.kl_weight = float(kl_weight)
        self.pe_freqs = int(pe_freqs)
        ch = list(self.config["encoder_channels"])

        # encoder: class embedding -> full-resolution conv -> strided downsampling steps (each halving the
        # axes that still need it) with a residual block after each
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.stem = nn.Conv3d(embed_dim, ch[0], 3, padding=1, padding_mode="replicate")
        steps, f = [], list(factors)
        while any(v > 1 for v in f):
            stride = tuple(2 if v > 1 else 1 for v in f)
            steps.append(stride)
            f = [v // s for v, s in zip(f, stride)]
        down, c = [], ch[0]
        for i, stride in enumerate(steps):
            c_out = ch[min(i + 1, len(ch) - 1)]
            down += [nn.Conv3d(c, c_out, kernel_size=stride, stride=stride), ResBlock3d(c_out)]
            c = c_out
        if not steps:
            down.append(ResBlock3d(c))
        self.down = nn.Sequential(*down)
        n_out = latent_channels * (2 if variational else 1)
        # per plane: [mean, max] over the collapsed axis -> residual 2D block -> latent channels
        self.enc_planes = nn.ModuleList(
            nn.Sequential(ResBlock2d(2 * c, c), nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, n_out, 3, padding=1, padding_mode="replicate"))
            for _ in range(3))

        # decoder: per-plane convs -> deformable triplane sampling -> MLP with PE and a skip
        d = decoder_channels
        self.dec_planes = nn.ModuleList(
            nn.Sequential(nn.Conv2d(latent_channels, d, 3, padding=1, padding_mode="replicate"), ResBlock2d(d, d)) for _ in range(3))
        pe_dim = 3 + 6 * pe_freqs
        self.attention = TriplaneDeformableAttention(pe_dim, num_offsets)
        self.skip_at = mlp_depth // 2 if mlp_depth > 1 else -1
        layers, width_in = [], d + pe_dim
        for i in range(mlp_depth):
            extra = d + pe_dim if i == self.skip_at else 0
            layers.append(nn.Linear(width_in + extra, mlp_width))
            width_in = mlp_width
        self.mlp = nn.ModuleList(layers)
        self.head = nn.Linear(mlp_width, num_classes)

    # -- construction --------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "TriplaneVAE":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def is_encoder_parameter(self, name: str) -> bool:
        """Whether a state-dict key belongs to the encoder (ENCODER_MODULES)."""
        return name.split(".", 1)[0] in ENCODER_MODULES

    def freeze_encoder(self) -> None:
        """Stop gradients into the encoder, so training changes the decoder only and the latent space stays."""
        for name, p in self.named_parameters():
            if self.is_encoder_parameter(name):
                p.requires_grad_(False)

    # -- encoder -------------------------------------------------------------------------------------
    def _check_labels(self, labels) -> torch.Tensor:
        labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
        if labels.ndim == 3:
            labels = labels[None]
        if labels.ndim != 4 or tuple(labels.shape[1:]) != self.grid_shape:
            raise ValueError(f"labels: expected [B, {', '.join(map(str, self.grid_shape))}], got {list(labels.shape)}")
        if labels.dtype.is_floating_point:
            raise ValueError(f"labels: expected integer class ids, got dtype {labels.dtype}")
        return labels.to(self.device).long()

    def encode_distribution(self, labels) -> tuple[Planes, Planes | None]:
        """(mean, log-variance) planes; log-variance is None for the deterministic model."""
        x = self._check_labels(labels)
        h = self.embed(x).permute(0, 4, 1, 2, 3).contiguous(memory_format=torch.channels_last_3d)  # [B, E, X, Y, Z]
        h = self.down(self.stem(h))                                                              # [B, c, X', Y', Z']
        aggs = [torch.cat([h.mean(dim=a), h.amax(dim=a)], dim=1).contiguous() for a in (4, 3, 2)]  # xy, xz, yz
        outs = [head(a) for head, a in zip(self.enc_planes, aggs)]
        if self.variational:
            mean = Planes(*(o.chunk(2, dim=1)[0] for o in outs))
            logvar = Planes(*(o.chunk(2, dim=1)[1].clamp(-30.0, 20.0) for o in outs))
            return mean, logvar
        return Planes(*(torch.tanh(F.instance_norm(o) * 0.5) for o in outs)), None

    def encode(self, labels, sample: bool = False, generator: torch.Generator | None = None) -> Planes:
        """labels: int [B, X, Y, Z] (or [X, Y, Z]) Occ3D ids -> Planes. A variational model returns its mean
        unless `sample` is True."""
        mean, logvar = self.encode_distribution(labels)
        if not (self.variational and sample):
            return mean
        return Planes(*(m + torch.randn(m.shape, generator=generator, device=m.device, dtype=m.dtype) * (0.5 * lv).exp()
                        for m, lv in zip(mean, logvar)))

    def encode_occupancy(self, occ: Occupancy) -> Triplane:
        """One Occupancy -> its Triplane (mean latent)."""
        with torch.no_grad():
            return self.encode(occ.labels[None]).to_triplanes()[0]

    # -- decoder -------------------------------------------------------------------------------------
    def decoder_features(self, planes: Planes | Triplane | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The decoder's per-plane feature maps (computed once, reused for every batch of points)."""
        if isinstance(planes, Triplane):
            planes = Planes(planes.xy[None], planes.xz[None], planes.yz[None])
        planes = [p.to(self.device) for p in planes]
        return [conv(p) for conv, p in zip(self.dec_planes, planes)]

    def decode_features(self, feats: Sequence[torch.Tensor], points: torch.Tensor) -> torch.Tensor:
        """Class logits [B, N, num_classes] at points [B, N, 3] from decoder_features."""
        pe = positional_encoding(points, self.pe_freqs)
        h0 = torch.cat([self.attention(feats, points, pe), pe], dim=-1)
        h = h0
        for i, layer in enumerate(self.mlp):
            if i == self.skip_at:
                h = torch.cat([h, h0], dim=-1)
            h = F.relu(layer(h))
        return self.head(h)

    def decode(self, planes: Planes | Triplane | Sequence[torch.Tensor], points: torch.Tensor) -> torch.Tensor:
        """planes (batched Planes, or one Triplane) and points float [B, N, 3] (or [N, 3]) in grid-normalised
        coordinates -> class logits float [B, N, num_classes]."""
        points = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        if points.ndim == 2:
            points = points[None]
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"points: expected [B, N, 3], got {list(points.shape)}")
        feats = self.decoder_features(planes)
        if feats[0].shape[0] != points.shape[0]:
            raise ValueError(f"decode: {feats[0].shape[0]} triplanes but {points.shape[0]} point sets")
        return self.decode_features(feats, points)

    def forward(self, labels, points: torch.Tensor, generator: torch.Generator | None = None):
        """Training pass: (logits [B, N, C], mean planes, log-variance planes or None)."""
        mean, logvar = self.encode_distribution(labels)
        z = mean
        if self.variational and self.training:
            z = Planes(*(m + torch.randn(m.shape, generator=generator, device=m.device) * (0.5 * lv).exp() for m, lv in zip(mean, logvar)))
        return self.decode(z, points), mean, logvar

    @torch.no_grad()
    def decode_volume(self, planes: Planes | Triplane, chunk_points: int = 131072) -> torch.Tensor:
        """Labels uint8 [B, X, Y, Z]: the argmax class at every voxel centre, decoded in chunks of points."""
        feats = self.decoder_features(planes)
        b = feats[0].shape[0]
        pts = voxel_centers(self.grid_shape, self.device)
        out = torch.empty(b, pts.shape[0], dtype=torch.uint8, device=self.device)
        for s in range(0, pts.shape[0], chunk_points):
            p = pts[s:s + chunk_points].expand(b, -1, -1)
            out[:, s:s + chunk_points] = self.decode_features(feats, p).argmax(-1).to(torch.uint8)
        return out.view(b, *self.grid_shape)

    @torch.no_grad()
    def reconstruct(self, labels, chunk_points: int = 131072) -> torch.Tensor:
        """labels int [B, X, Y, Z] -> reconstructed labels uint8 [B, X, Y, Z] (mean latent, argmax class)."""
        return self.decode_volume(self.encode(labels), chunk_points)

    def kl_loss(self, mean: Planes, logvar: Planes | None) -> torch.Tensor:
        """Mean KL divergence to N(0, 1) over all latent entries (0 for the deterministic model)."""
        if logvar is None:
            return mean.xy.new_zeros(())
        return sum(-0.5 * torch.mean(1 + lv - m.pow(2) - lv.exp()) for m, lv in zip(mean, logvar)) / 3
