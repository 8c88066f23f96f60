"""VMamba (Liu et al., NeurIPS 2024, "VMamba: Visual State Space Model"; official code
MzeroMiko/VMamba, ``classification/models/vmamba.py``) with the local window scan of
LocalMamba (Huang et al., 2024, "LocalMamba: Visual State Space Model with Windowed
Selective Scan"; official code hunto/LocalMamba) as used by LQMamba (docs/qmamba.md).

Only the configuration of VMamba v2 (``forward_type="v05_noz"``, ``norm_layer="ln2d"``,
``downsample_version="v3"``, ``patchembed_version="v2"``) is implemented; all tensors are
channel-first ``(B, C, H, W)``. Parameter names equal the official ones, so official state
dicts load without renaming.

A stage is ``blocks`` (VSS blocks, Sec. 3.3 / Fig. 3) followed by a stride-2 ``downsample``
(none after the last stage). Each VSS block is ``x + SS2D(LN(x))`` then ``x + MLP(LN(x))``;
SS2D (Sec. 3.2) unfolds the map into K = 4 sequences, runs one selective scan (S6) per
sequence with its own projections, folds them back and sums them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch.utils.flop_counter import FlopCounterMode

from iqa.models.backbones.layers2d import LayerNorm2d, Linear2d, Mlp
from iqa.models.backbones.scans import CrossScan, LocalScan
from iqa.ops import selective_scan

try:
    from iqa.ops.scan_cross_numba import directional_scan_numba
except ImportError:  # numba is optional: SS2D then unfolds the map and calls selective_scan
    directional_scan_numba = None

DIRECTIONS = 4  # K: row-major, column-major and both reversed (Fig. 2 of VMamba)
StageHook = Callable[[int, torch.Tensor], torch.Tensor]


def _per_element_count(cost: int) -> Callable[..., int]:
    """A ``FlopCounterMode`` rule: ``cost`` operations per element of the first input."""

    def count(input_shape: torch.Size, *args, **kwargs) -> int:
        return cost * math.prod(input_shape)

    return count


class SS2D(nn.Module):
    """2D selective scan (VMamba Sec. 3.2, ``forward_type="v05_noz"``: no gate branch).

    ``in_proj`` → depth-wise conv → SiLU → K sequences (``scan``) → per sequence
    Δ, B, C = ``x_proj``(x) (the selection of Mamba, Gu & Dao 2023, Alg. 2) → S6 → fold and sum →
    ``out_norm`` → ``out_proj``.

    On CPU with numba (``scan_backend`` auto or torch, ``fused_scan`` true) the K sequences are
    not materialised: the projections run on the map in pixel order and one compiled kernel
    scans the K paths through it and merges them (:mod:`iqa.ops.scan_cross_numba`; the local
    scan's gates and gated merge: :mod:`iqa.ops.local_gate_numba`); same result.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        conv_bias: bool = False,
        dropout: float = 0.0,
        scan: nn.Module | None = None,
        scan_backend: str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        d_inner = int(ssm_ratio * d_model)
        self.d_inner, self.d_state = d_inner, d_state
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend = scan_backend
        self.fused_scan = True  # a switch for comparisons; no effect off CPU or without numba
        self.in_proj = Linear2d(d_model, d_inner, bias=False)
        self.act = nn.SiLU()
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=conv_bias)
        self.scan = scan if scan is not None else CrossScan()

        # Per direction k: x_proj (R + 2N rows), dt_proj (rank R), log(-A), D (S4D-real init).
        bound = d_inner**-0.5  # nn.Linear's default initialisation
        self.x_proj_weight = nn.Parameter(torch.empty(DIRECTIONS, self.dt_rank + 2 * d_state, d_inner).uniform_(
            -bound, bound))
        dt_std = self.dt_rank**-0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(DIRECTIONS, d_inner, self.dt_rank).uniform_(-dt_std, dt_std))
        dt = torch.exp(torch.rand(DIRECTIONS, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(
            DIRECTIONS * d_inner, 1))
        self.Ds = nn.Parameter(torch.ones(DIRECTIONS * d_inner))

        self.out_norm = LayerNorm2d(d_inner)
        self.out_proj = Linear2d(d_inner, d_model, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def scan_flops(self, batch: int, length: int) -> int:
        """Multiply-accumulates of one selective scan as VMamba counts them (9·B·L·D·N + B·D·L,
        state-spaces/mamba issue 110), D = K · d_inner."""
        channels = DIRECTIONS * self.d_inner
        return 9 * batch * length * channels * self.d_state + batch * channels * length

    def forward_core(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fused_scan and directional_scan_numba is not None and self.scan_backend in ("auto", "torch")
        if fused and x.device.type == "cpu":
            return self._forward_core_in_place(x)
        batch, _, height, width = x.shape
        xs = self.scan.unfold(x)  # (B, K, D, L)
        length = xs.shape[-1]
        projected = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(projected, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        ys = selective_scan(
            xs.reshape(batch, -1, length), dts.reshape(batch, -1, length), -torch.exp(self.A_logs.float()),
            Bs.contiguous(), Cs.contiguous(), self.Ds.float(), delta_bias=self.dt_projs_bias.view(-1).float(),
            delta_softplus=True, backend=self.scan_backend,
        ).view(batch, DIRECTIONS, self.d_inner, length)
        return self.out_norm(self.scan.fold(ys, height, width).to(x.dtype))

    def _forward_core_in_place(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward_core` with the K paths read in place, pixel-major: x_proj is a per-pixel
        map, so it runs once on the map instead of on K reordered copies; dt_proj runs inside the
        kernel. For channels-last maps (LayerNorm2d's output keeps that layout through in_proj and
        conv2d) the pixel-major view and the output's channel-first view are free."""
        batch, dim, height, width = x.shape
        padded_h, padded_w = self.scan.padded_size(height, width)
        if (padded_h, padded_w) != (height, width):
            x = F.pad(x, (0, padded_w - width, 0, padded_h - height))
        pixels_last = x.permute(0, 2, 3, 1).reshape(batch, -1, dim).float()  # (B, P, D)
        projected = (pixels_last @ self.x_proj_weight.flatten(0, 1).T.float()).view(
            batch, -1, DIRECTIONS, self.x_proj_weight.shape[1])  # (B, P, K, R + 2N)
        dts, Bs, Cs = torch.split(projected, [self.dt_rank, self.d_state, self.d_state], dim=3)
        merge = isinstance(self.scan, CrossScan)
        ys = directional_scan_numba(
            pixels_last, dts, self.dt_projs_weight.float(), self.dt_projs_bias.view(-1).float(),
            -torch.exp(self.A_logs.float()), Bs, Cs, self.Ds.float(), self.scan.paths(height, width), merge,
        )
        if merge:
            return self.out_norm(ys.view(batch, height, width, dim).permute(0, 3, 1, 2).to(x.dtype))
        ys = ys.view(batch, DIRECTIONS, padded_h, padded_w, dim)
        return self.out_norm(self.scan.fold_pixels(ys, height, width).to(x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2d(self.in_proj(x)))
        return self.dropout(self.out_proj(self.forward_core(x)))


class VSSBlock(nn.Module):
    """``x + DropPath(SS2D(LN(x)))`` then ``x + DropPath(MLP(LN(x)))`` (VMamba Fig. 3)."""

    def __init__(self, dim: int, drop_path: float, mlp_ratio: float, mlp_drop_rate: float, **ss2d_kwargs) -> None:
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.op = SS2D(dim, **ss2d_kwargs)
        self.drop_path = DropPath(drop_path)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), mlp_drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.op(self.norm(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VSSM(nn.Module):
    """The VMamba backbone and classifier (official class ``VSSM``, v2 configuration).

    Args:
        depths, dims: blocks and channels per stage (``dims`` an int doubles per stage).
        ssm_d_state, ssm_ratio, ssm_dt_rank, ssm_conv, ssm_conv_bias, ssm_drop_rate: SS2D's
            N, expansion, Δ rank, depth-wise kernel, its bias, and output dropout.
        mlp_ratio, mlp_drop_rate: the MLP's expansion and dropout.
        drop_path_rate: stochastic depth, rising linearly over all blocks.
        scan: ``cross`` (VMamba) or ``local`` (LQMamba's window scan, :class:`LocalScan`).
        window_sizes: the local scan's window side per stage.
        scan_backend: passed to :func:`iqa.ops.selective_scan` (``auto`` | ``cuda`` | ``torch``).
        forward_type, norm_layer, downsample_version, patchembed_version: accepted so that
            an official configuration can be passed unchanged; only the v2 values exist here.
    """

    def __init__(
        self,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (2, 2, 9, 2),
        dims: int | Sequence[int] = 96,
        ssm_d_state: int = 1,
        ssm_ratio: float = 2.0,
        ssm_dt_rank: int | str = "auto",
        ssm_conv: int = 3,
        ssm_conv_bias: bool = False,
        ssm_drop_rate: float = 0.0,
        mlp_ratio: float = 4.0,
        mlp_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        scan: str = "cross",
        window_sizes: Sequence[int] = (8, 4, 2, 1),
        scan_backend: str = "auto",
        forward_type: str = "v05_noz",
        norm_layer: str = "ln2d",
        downsample_version: str = "v3",
        patchembed_version: str = "v2",
    ) -> None:
        super().__init__()
        fixed = {"forward_type": (forward_type, "v05_noz"), "norm_layer": (norm_layer.lower(), "ln2d"),
                 "downsample_version": (downsample_version, "v3"), "patchembed_version": (patchembed_version, "v2")}
        for name, (given, supported) in fixed.items():
            if given != supported:
                raise ValueError(f"{name}={given!r}: only VMamba's v2 configuration ({name}={supported!r}) exists here")
        if scan not in ("cross", "local"):
            raise ValueError(f"scan must be 'cross' or 'local', got {scan!r}")
        if isinstance(dims, int):
            dims = [dims * 2**i for i in range(len(depths))]
        if len(dims) != len(depths) or (scan == "local" and len(window_sizes) != len(depths)):
            raise ValueError(f"need one value per stage: depths {list(depths)}, dims {list(dims)}, "
                             f"window_sizes {list(window_sizes)}")
        self.dims, self.num_features, self.num_classes = list(dims), dims[-1], num_classes
        rates = [drop_path_rate * i / max(sum(depths) - 1, 1) for i in range(sum(depths))]
        ssm = dict(d_state=ssm_d_state, ssm_ratio=ssm_ratio, dt_rank=ssm_dt_rank, d_conv=ssm_conv,
                   conv_bias=ssm_conv_bias, dropout=ssm_drop_rate, scan_backend=scan_backend)

        # Two stride-2 3×3 convolutions (patchembed v2); keys are the official Sequential indices.
        half = dims[0] // 2
        stride, kernel = patch_size // 2, patch_size // 2 + 1
        self.patch_embed = nn.Sequential(OrderedDict([
            ("0", nn.Conv2d(in_chans, half, kernel, stride, padding=1)),
            ("2", LayerNorm2d(half)),
            ("4", nn.GELU()),
            ("5", nn.Conv2d(half, dims[0], kernel, stride, padding=1)),
            ("7", LayerNorm2d(dims[0])),
        ]))
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            first = sum(depths[:i])
            blocks = nn.Sequential(*(
                VSSBlock(dims[i], rates[first + j], mlp_ratio, mlp_drop_rate,
                         scan=LocalScan(int(ssm_ratio * dims[i]), window_sizes[i]) if scan == "local" else None, **ssm)
                for j in range(depth)
            ))
            last = i == len(depths) - 1
            downsample = nn.Identity() if last else nn.Sequential(OrderedDict([  # downsample v3
                ("1", nn.Conv2d(dims[i], dims[i + 1], 3, 2, padding=1)),
                ("3", LayerNorm2d(dims[i + 1])),
            ]))
            self.layers.append(nn.Sequential(OrderedDict(blocks=blocks, downsample=downsample)))
        self.classifier = nn.Sequential(OrderedDict(
            norm=LayerNorm2d(self.num_features),
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(1),
            head=nn.Linear(self.num_features, num_classes),
        ))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor, stage_hook: StageHook | None = None) -> torch.Tensor:
        """The last stage's map. ``stage_hook(i, features)`` may replace stage ``i``'s block
        output before its downsample (e.g. a prompt that modulates every stage)."""
        x = self.patch_embed(x)
        for i, layer in enumerate(self.layers):
            x = layer.blocks(x)
            if stage_hook is not None:
                x = stage_hook(i, x)
            x = layer.downsample(x)
        return x

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's block output ``(B, dims[i], H/2^(i+2), W/2^(i+2))``."""
        features: list[torch.Tensor] = []

        def keep(_: int, stage: torch.Tensor) -> torch.Tensor:
            features.append(stage)
            return stage

        self.forward_features(x, keep)
        return features

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        for name, module in self.classifier.named_children():
            if pre_logits and name == "head":
                break
            x = module(x)
        return x

    def forward(self, x: torch.Tensor, stage_hook: StageHook | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, stage_hook))

    @torch.no_grad()
    def flops(self, image_size: int = 224) -> int:
        """Multiply-accumulates for one image, counted as VMamba does with fvcore: convolutions
        and linear maps, 5 per element of a LayerNorm, 1 per element of the average pooling,
        and the selective scans by :meth:`SS2D.scan_flops`; element-wise operations are free."""
        aten = torch.ops.aten
        per_element = {aten.native_layer_norm: 5, aten._adaptive_avg_pool2d: 1}
        custom = {op: _per_element_count(cost) for op, cost in per_element.items()}
        scans: list[int] = []

        def count_scan(ss2d: SS2D, args: tuple[torch.Tensor], _: torch.Tensor) -> None:
            batch, _, height, width = args[0].shape
            scans.append(ss2d.scan_flops(batch, ss2d.scan.length(height, width)))

        ss2d = [m for m in self.modules() if isinstance(m, SS2D)]
        hooks = [m.register_forward_hook(count_scan) for m in ss2d]
        fused = [m.fused_scan for m in ss2d]
        try:
            for m in ss2d:  # the unfolding path, whose Δ projection (an einsum) the counter sees
                m.fused_scan = False
            with FlopCounterMode(display=False, custom_mapping=custom) as counter:
                self(torch.zeros(1, 3, image_size, image_size, device=next(self.parameters()).device))
        finally:
            for hook, m, was_fused in zip(hooks, ss2d, fused):
                hook.remove()
                m.fused_scan = was_fused
        counts = counter.get_flop_counts()["Global"]
        # FlopCounterMode counts a multiply-accumulate as 2 FLOPs; fvcore and the papers count 1.
        return sum(n if op in per_element else n // 2 for op, n in counts.items()) + sum(scans)
