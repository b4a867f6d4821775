"""A class-conditional DiT with the parameter names, config keys and forward math of diffusers'
DiTTransformer2DModel (v0.30.3), written for training with plain torch (no diffusers import).

Layout of the state dict (D = hidden size, L = num_layers, p = patch size, C = channels):
  pos_embed.proj.{weight,bias}                        Conv2d C -> D, kernel = stride = p
  transformer_blocks.i.norm1.emb.timestep_embedder.linear_{1,2}.{weight,bias}   256 -> D -> D
  transformer_blocks.i.norm1.emb.class_embedder.embedding_table.weight          [classes + 1, D]
  transformer_blocks.i.norm1.linear.{weight,bias}     D -> 6D (adaLN-Zero modulation)
  transformer_blocks.i.attn1.to_{q,k,v}.{weight,bias}, attn1.to_out.0.{weight,bias}
  transformer_blocks.i.ff.net.0.proj.{weight,bias}    D -> 4D, then GELU (tanh)
  transformer_blocks.i.ff.net.2.{weight,bias}         4D -> D
  proj_out_1.{weight,bias}                            D -> 2D (shift, scale of the output norm)
  proj_out_2.{weight,bias}                            D -> p*p*C_out
The 2-D position embedding is a fixed, non-persistent buffer (computed from the config, not saved).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

# The timestep projection width is fixed in diffusers' CombinedTimestepLabelEmbeddings.
TIMESTEP_PROJ_DIM = 256


def default_config(**overrides):
    """The config.json keys DiTTransformer2DModel.save_config writes (minus _class_name/_diffusers_version)."""
    config = {
        "activation_fn": "gelu-approximate",
        "attention_bias": True,
        "attention_head_dim": 32,
        "dropout": 0.0,
        "in_channels": 1,
        "norm_elementwise_affine": False,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "norm_type": "ada_norm_zero",
        "num_attention_heads": 6,
        "num_embeds_ada_norm": 10,
        "num_layers": 6,
        "out_channels": 1,
        "patch_size": 4,
        "sample_size": 28,
        "upcast_attention": False,
    }
    unknown = set(overrides) - set(config)
    if unknown:
        raise ValueError(f"unknown DiT config keys: {sorted(unknown)}")
    config.update(overrides)
    return config


def sincos_position_table(embed_dim, grid):
    """[grid*grid, embed_dim] fixed position table for a square token grid, in token order row*grid + col.

    The first half of the channels encodes the column, the second half the row; each half is
    [sin(pos * w_k), cos(pos * w_k)] with w_k = 10000^(-k / (embed_dim/4)). The grid coordinates are
    scaled by base_size/grid, and DiT's base size is the grid itself, so positions are plain indices.
    Computed in float64, stored as float32 (diffusers does the same through numpy).
    """
    if embed_dim % 4 != 0:
        raise ValueError("embed_dim must be a multiple of 4 for the 2-D sin-cos table")
    quarter = embed_dim // 4
    freqs = 1.0 / (10000.0 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    index = torch.arange(grid, dtype=torch.float64)
    rows = index.repeat_interleave(grid)  # token t -> t // grid
    cols = index.repeat(grid)  # token t -> t % grid

    def encode(pos):
        angles = pos[:, None] * freqs[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()


def timestep_features(timesteps):
    """Sinusoidal timestep features [N, 256]: cos half first, then sin (flip_sin_to_cos), with the
    frequency exponent divided by (half - 1) (downscale_freq_shift 1)."""
    half = TIMESTEP_PROJ_DIM // 2
    exponent = -math.log(10000.0) * torch.arange(half, dtype=torch.float32) / (half - 1)
    angles = timesteps.reshape(-1).float()[:, None] * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class PatchEmbed(nn.Module):
    def __init__(self, sample_size, patch_size, in_channels, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        grid = sample_size // patch_size
        self.register_buffer("pos_embed", sincos_position_table(dim, grid)[None], persistent=False)

    def forward(self, images):
        tokens = self.proj(images).flatten(2).transpose(1, 2)  # [B, D, h, w] -> [B, h*w, D]
        return tokens + self.pos_embed


class TimestepEmbedding(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.linear_1 = nn.Linear(TIMESTEP_PROJ_DIM, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, features):
        # The sinusoidal features are always computed in fp32, then cast to the model's dtype.
        features = features.to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(features)))


class LabelEmbedding(nn.Module):
    """Label table with one extra row: index num_classes is the null class of classifier-free guidance.
    Label dropout is done by the caller (training loop), once per sample for the whole model."""

    def __init__(self, num_classes, dim):
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels):
        return self.embedding_table(labels)


class CombinedTimestepLabelEmbeddings(nn.Module):
    def __init__(self, num_classes, dim):
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(dim)
        self.class_embedder = LabelEmbedding(num_classes, dim)

    def forward(self, timesteps, labels):
        return self.timestep_embedder(timestep_features(timesteps)) + self.class_embedder(labels)


class AdaLayerNormZero(nn.Module):
    """Per-block conditioning: its own embedder, then SiLU + Linear to six modulation vectors."""

    def __init__(self, dim, num_classes):
        super().__init__()
        self.emb = CombinedTimestepLabelEmbeddings(num_classes, dim)
        self.linear = nn.Linear(dim, 6 * dim)

    def forward(self, x, timesteps, labels):
        modulation = self.linear(F.silu(self.emb(timesteps, labels)))
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation.chunk(6, dim=1)
        x = F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + scale_msa[:, None]) + shift_msa[:, None]
        return x, gate_msa, shift_mlp, scale_mlp, gate_mlp


class Attention(nn.Module):
    def __init__(self, dim, heads, head_dim, bias):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(dim, inner, bias=bias)
        self.to_v = nn.Linear(dim, inner, bias=bias)
        # index 1 of diffusers' to_out is a Dropout; a ModuleList keeps the ".0." in the names.
        self.to_out = nn.ModuleList([nn.Linear(inner, dim, bias=True)])

    def forward(self, x):
        batch, tokens, _ = x.shape

        def split_heads(t):
            return t.reshape(batch, tokens, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split_heads(self.to_q(x)), split_heads(self.to_k(x)), split_heads(self.to_v(x))
        weights = torch.softmax((q @ k.transpose(-1, -2)) * (self.head_dim ** -0.5), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, tokens, self.heads * self.head_dim)
        return self.to_out[0](out)


class GeluTanhProjection(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        # diffusers' net is [GELU, Dropout, Linear]; an Identity keeps the index 2 of the output Linear.
        self.net = nn.ModuleList([GeluTanhProjection(dim, 4 * dim), nn.Identity(), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        for layer in self.net:
            x = layer(x)
        return x


class DiTBlock(nn.Module):
    def __init__(self, dim, heads, head_dim, num_classes, bias, norm_eps):
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim, num_classes)
        self.attn1 = Attention(dim, heads, head_dim, bias)
        self.norm_eps = norm_eps  # norm3: LayerNorm without affine parameters
        self.ff = FeedForward(dim)

    def forward(self, x, timesteps, labels):
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(x, timesteps, labels)
        x = x + gate_msa[:, None] * self.attn1(normed)
        normed = F.layer_norm(x, x.shape[-1:], eps=self.norm_eps) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        return x + gate_mlp[:, None] * self.ff(normed)


class DiT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self._check_config(config)
        self.config = dict(config)
        dim = config["num_attention_heads"] * config["attention_head_dim"]
        self.patch_size = config["patch_size"]
        self.out_channels = config["out_channels"]
        self.pos_embed = PatchEmbed(config["sample_size"], self.patch_size, config["in_channels"], dim)
        self.transformer_blocks = nn.ModuleList(
            DiTBlock(
                dim,
                config["num_attention_heads"],
                config["attention_head_dim"],
                config["num_embeds_ada_norm"],
                config["attention_bias"],
                config["norm_eps"],
            )
            for _ in range(config["num_layers"])
        )
        self.proj_out_1 = nn.Linear(dim, 2 * dim)
        self.proj_out_2 = nn.Linear(dim, self.patch_size * self.patch_size * self.out_channels)

    @staticmethod
    def _check_config(config):
        fixed = {
            "activation_fn": "gelu-approximate",
            "norm_type": "ada_norm_zero",
            "norm_elementwise_affine": False,
            "dropout": 0.0,
            "upcast_attention": False,
        }
        for key, value in fixed.items():
            if config[key] != value:
                raise ValueError(f"config {key} must be {value!r} for this implementation, got {config[key]!r}")
        if config["sample_size"] % config["patch_size"] != 0:
            raise ValueError("sample_size must be a multiple of patch_size")

    def forward(self, images, timesteps, labels):
        """images [B, C, H, W] float, timesteps [B] (int or float), labels [B] int64 (num_classes = null)."""
        x = self.pos_embed(images)
        for block in self.transformer_blocks:
            x = block(x, timesteps, labels)
        # The output head reuses block 0's embedder (as diffusers does), not an embedder of its own.
        conditioning = self.transformer_blocks[0].norm1.emb(timesteps, labels)
        shift, scale = self.proj_out_1(F.silu(conditioning)).chunk(2, dim=1)
        x = F.layer_norm(x, x.shape[-1:], eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
        return self._unpatchify(self.proj_out_2(x))

    def _unpatchify(self, patches):
        batch, tokens, _ = patches.shape
        grid = int(round(tokens ** 0.5))
        p, c = self.patch_size, self.out_channels
        patches = patches.reshape(batch, grid, grid, p, p, c)
        return patches.permute(0, 5, 1, 3, 2, 4).reshape(batch, c, grid * p, grid * p)

    def initialize_weights(self, seed):
        """DiT's initialisation: Xavier-uniform Linears, zero biases, N(0, 0.02) for the label tables and
        the timestep MLPs, and zero adaLN modulation and output layers so every block starts as identity."""
        generator = torch.Generator().manual_seed(seed)

        def xavier(weight):
            fan_out, fan_in = weight.shape[0], weight[0].numel()
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            with torch.no_grad():
                weight.copy_(torch.rand(weight.shape, generator=generator) * 2 * bound - bound)

        def normal(weight, std):
            with torch.no_grad():
                weight.copy_(torch.randn(weight.shape, generator=generator) * std)

        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                xavier(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.transformer_blocks:
            emb = block.norm1.emb
            normal(emb.class_embedder.embedding_table.weight, 0.02)
            normal(emb.timestep_embedder.linear_1.weight, 0.02)
            normal(emb.timestep_embedder.linear_2.weight, 0.02)
            nn.init.zeros_(block.norm1.linear.weight)
            nn.init.zeros_(block.norm1.linear.bias)
        for layer in (self.proj_out_1, self.proj_out_2):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
