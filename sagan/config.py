"""Configuration dataclasses: the model's shape and a training run's options.

Both are plain dataclasses so they serialise to JSON (run directories, checkpoints and the
metadata of exported weights) and back without pickling anything.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field

from .attention import COSINE_SCALE_INIT, COSINE_SCALE_MAX
from .augment import parse_policy
from .devices import DEVICES, PRECISIONS
from .inception import INCEPTION_SHA256
from .sampling import MAX_SEED

IMAGE_SIZES = (32, 64, 128)
PRESETS = ("sagan", "seed", "dcgan")
# The fields train.py may set that shape the networks (a resumed run cannot change them).
MODEL_FLAGS = ("image_size", "z_dim", "conv_dim", "g_attn", "d_attn", "attn_pool", "attn_dnl", "attn_cosine",
               "attn_rel_pos", "attn_heads", "attn_gamma_init", "attn_whiten", "attn_cosine_scale",
               "attn_cosine_fixed")
# What else a resumed run keeps: its networks' preset, its validation split, the network its FIDs use.
RESUME_FIXED = ("preset", "holdout", "inception_sha256")
# What a resumed run may change that makes it train otherwise than the run it continues: it says so on resuming.
# (The rest may change without a word: how long it runs, what it logs, samples, checkpoints and validates,
# where files are, and how the same arithmetic is executed.)
RESUME_ANNOUNCED = ("data", "max_images", "batch_size", "seed", "lr_g", "lr_d", "beta1", "beta2", "ema_kimg",
                    "ema_rampup", "diffaugment", "precision", "sync_bn", "d_steps", "bcr_weight", "bcr_augment",
                    "topk", "topk_kimg")


@dataclass
class ModelConfig:
    image_size: int = 64                      # output resolution: 32, 64 or 128
    z_dim: int = 100                          # latent vector length
    conv_dim: int = 64                        # channels of the finest layer; coarser layers double it
    g_attn: tuple[int, ...] = (16, 32)        # generator feature-map resolutions followed by self-attention
    d_attn: tuple[int, ...] = (16, 8)         # discriminator feature-map resolutions followed by self-attention
    attn_pool: bool = True                    # 2x2 max-pooled keys and values (official SAGAN); off: full attention
    # The generator's attention options (sagan/attention.py). The defaults, whitened cosine logits at a fixed
    # scale of 20, are the attention ablation's choice (README); all off is the SAGAN block. A config saved
    # before a field existed takes what its run trained with instead (FIELDS_BEFORE).
    attn_dnl: bool = False                    # whitened pairwise logits plus a separate unary branch (DNL)
    attn_cosine: bool = True                  # cosine logits times a scale, clamped to 100 (Swin V2)
    attn_rel_pos: bool = False                # a learned 2D relative-position bias per head (Swin)
    attn_heads: int = 1                       # attention heads per layer; must divide conv_dim / 8
    attn_gamma_init: float = 0.0              # starting weight of the attention branch (SAGAN: 0)
    attn_whiten: bool = True                  # whitened pairwise logits alone, no unary branch (DNL's pairwise term)
    attn_cosine_scale: float = 20.0           # starting scale of cosine logits (Swin V2: 10), at most 100
    attn_cosine_fixed: bool = True            # the cosine scale stays at attn_cosine_scale: not learned (DNL)

    def __post_init__(self):
        self.g_attn = tuple(int(r) for r in self.g_attn)
        self.d_attn = tuple(int(r) for r in self.d_attn)
        # Messages name the train.py flag, as TrainConfig.check's do; a library user reads it as the field.
        if self.image_size not in IMAGE_SIZES:
            raise ValueError(f"--image-size {self.image_size} is not supported: choose one of "
                             f"{', '.join(map(str, IMAGE_SIZES))}.")
        for name, least in (("z_dim", 1), ("conv_dim", 8)):
            if getattr(self, name) < least:
                raise ValueError(f"{_flag(name)} must be at least {least}, not {getattr(self, name)}.")
        if self.attn_heads < 1 or (self.conv_dim // 8) % self.attn_heads:
            raise ValueError(f"--attn-heads {self.attn_heads} must divide --conv-dim / 8 = {self.conv_dim // 8}: each "
                             "head takes an equal share of every attention layer's query and key channels.")
        if not math.isfinite(self.attn_gamma_init):
            raise ValueError(f"--attn-gamma-init must be a number, not {self.attn_gamma_init}.")
        if not 0 < self.attn_cosine_scale <= COSINE_SCALE_MAX:  # NaN fails too
            raise ValueError(f"--attn-cosine-scale must be above 0 and at most {COSINE_SCALE_MAX:g} (the scale's "
                             f"clamp), not {self.attn_cosine_scale}.")
        g_ok, d_ok = generator_resolutions(self.image_size), discriminator_resolutions(self.image_size)
        for name, net, wanted, ok in (("g_attn", "generator", self.g_attn, g_ok),
                                      ("d_attn", "discriminator", self.d_attn, d_ok)):
            bad = [r for r in wanted if r not in ok]
            if bad:
                raise ValueError(f"{_flag(name)} {','.join(map(str, bad))}: the {net} has no "
                                 f"{' or '.join(f'{r}x{r}' for r in bad)} feature map at image size "
                                 f"{self.image_size}: choose from {','.join(map(str, ok))}.")

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """A saved config (config.json, a checkpoint, an export's metadata). A field it lacks was added after it
        was written: it takes the value that version trained with (FIELDS_BEFORE), not today's default."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config field(s) {sorted(unknown)}: the file was written by "
                             "another version of sagan-anime.")
        return cls(**{**FIELDS_BEFORE, **values})


# What a config saved before each of these fields existed was trained with: the SAGAN block, and once
# whitened cosine logits came, a learned scale starting at 10.
FIELDS_BEFORE = dict(attn_dnl=False, attn_cosine=False, attn_rel_pos=False, attn_heads=1, attn_gamma_init=0.0,
                     attn_whiten=False, attn_cosine_scale=COSINE_SCALE_INIT, attn_cosine_fixed=False)


def generator_resolutions(image_size: int) -> tuple[int, ...]:
    """Resolutions of the generator's hidden feature maps: 4, 8, ..., image_size / 2."""
    return tuple(4 * 2 ** i for i in range(image_size.bit_length() - 3))


def discriminator_resolutions(image_size: int) -> tuple[int, ...]:
    """Resolutions of the discriminator's hidden feature maps: image_size / 2, ..., 4."""
    return tuple(reversed(generator_resolutions(image_size)))


def preset(name: str, image_size: int = 64, **overrides) -> ModelConfig:
    """Attention placement by name, scaled to the image size.

    seed:  the blog post's generator (attention on the two coarsest maps, 4x4 and 8x8, the SAGAN block).
    sagan: attention on the two finest generator maps (16x16, 32x32 at 64x64) and on the
           discriminator's S/4 and S/8 maps, with pooled keys: the default, attention where a
           64x64 face has detail to relate, at a quarter of full attention's cost; the generator's
           with the default attention options.
    dcgan: no attention at all, for measuring what attention buys.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}.")
    s = image_size
    placement = {
        "seed": dict(g_attn=(4, 8), d_attn=(8, 4), attn_pool=False, **FIELDS_BEFORE),  # the SAGAN block
        "sagan": dict(g_attn=(s // 4, s // 2), d_attn=(s // 4, s // 8), attn_pool=True),
        "dcgan": dict(g_attn=(), d_attn=(), attn_pool=False),
    }[name]
    placement.update(overrides)
    return ModelConfig(image_size=image_size, **placement)


@dataclass
class TrainConfig:
    data: str = ""                            # folder (searched recursively) or .zip of jpg/png/webp images
    out: str = "runs/sagan"                   # run directory: config, log, samples, checkpoints
    preset: str = "sagan"                     # attention placement preset the model was built from
    model: ModelConfig = field(default_factory=ModelConfig)  # network shape
    steps: int = 10_000                       # total generator updates (--d-steps D updates each)
    max_minutes: float = 0.0                  # stop early, checkpointed, after this many minutes; 0: no limit
    batch_size: int = 64                      # images per step, real and fake each
    lr_g: float = 1e-4                        # generator Adam learning rate (TTUR)
    lr_d: float = 4e-4                        # discriminator Adam learning rate (TTUR)
    beta1: float = 0.0                        # Adam beta1
    beta2: float = 0.9                        # Adam beta2
    ema_kimg: float | None = None             # half-life of the generator's EMA, thousands of images; None: scaled
                                              # with the batch, 10 kimg per 32 images (StyleGAN2-ADA)
    ema_rampup: float = 0.05                  # early on the half-life is at most this fraction of images seen
    diffaugment: str = ""                     # DiffAugment policy, e.g. "color,translation,cutout"; empty: off
    d_steps: int = 1                          # D updates per G update, each on its own real batch and fakes
    bcr_weight: float = 0.0                   # lambda of balanced consistency regularisation (Zhao et al. 2020)
    bcr_augment: str = "translation"          # DiffAugment policy whose outputs D must score as it scores its inputs
    topk: float = 0.0                         # top-k G loss (Sinha et al. 2020): least share of fakes kept; 0: off
    topk_kimg: float = 30.0                   # the kept share falls by 1% per this many thousand G images
    holdout: int = 0                          # last N files by name kept out of training (validation split)
    eval_data: str = ""                       # folder or .zip of validation faces (all its images) for --eval-every,
                                              # e.g. sagan.pack --split holdout; empty: the --holdout split of data
    max_images: int = 0                       # train on the training split's first N files by name only; 0: all
    seed: int = 0                             # seeds weights, latents, data order and augmentation
    device: str = "auto"                      # auto, cpu or cuda
    precision: str = "auto"                   # auto, bf16 or fp32 (auto: bf16 where the hardware has it)
    compile: bool = False                     # torch.compile G and D (falls back to eager if it fails)
    cuda_graphs: bool | None = None           # replay each step as one CUDA graph; None: for one-process CUDA runs
    sync_bn: bool = False                     # SyncBatchNorm in G across torchrun processes (CUDA only)
    log_every: int = 50                       # steps between log lines and TensorBoard scalars
    sample_every: int = 500                   # steps between sample grids from the fixed latents
    ckpt_every: int = 1000                    # steps between periodic checkpoints (latest is kept too)
    keep_ckpts: int = 5                       # periodic checkpoints kept (oldest deleted first; 0 keeps all)
    eval_every: int = 0                       # steps between validation FIDs on the holdout split; 0: off
    eval_samples: int = 2000                  # generated faces (seeds 0..N-1) per validation FID
    num_grid: int = 64                        # faces in each progress grid (seeds 0..num_grid-1)
    cache_dir: str = ""                       # decoded data sets and reference statistics; empty: <out>/cache
    inception: str = ""                       # TorchScript Inception file validation uses; empty: the wheel's
    inception_sha256: str = INCEPTION_SHA256  # sha256 that network must have (FIDs of others do not compare)

    def __post_init__(self):
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        self.inception_sha256 = self.inception_sha256.lower()  # a hash is one network, whatever its case

    def check(self) -> None:
        """Raise ValueError, naming the train.py flag, for a value no run can use (NaN included)."""
        at_least_one = ("steps", "batch_size", "log_every", "sample_every", "ckpt_every", "d_steps")
        non_negative = ("max_minutes", "holdout", "max_images", "keep_ckpts", "eval_every", "ema_rampup",
                        "bcr_weight")
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be at least 1, not {getattr(self, name)}.")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{_flag(name)} must be 0 or more, not {getattr(self, name)}.")
        if not self.bcr_weight < math.inf:
            raise ValueError(f"--bcr-weight must be a finite number, not {self.bcr_weight}.")
        for name in ("lr_g", "lr_d", "ema_kimg", "topk_kimg"):
            if not (name == "ema_kimg" and self.ema_kimg is None) and not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{_flag(name)} must be a number above 0, not {getattr(self, name)}.")
        if not 0 <= self.seed <= MAX_SEED:  # (data order and random streams mix it into 64-bit seeds)
            raise ValueError(f"--seed must be from 0 to {MAX_SEED:,}, not {self.seed}.")
        if not self.out:
            raise ValueError("--out must name the run's directory, not be empty.")
        if self.eval_every > 0 and self.eval_samples < 2:
            raise ValueError(f"--eval-samples must be at least 2 for a FID, not {self.eval_samples}.")
        if not 1 <= self.num_grid <= 1024:
            raise ValueError(f"--num-grid must be from 1 to 1024 faces, not {self.num_grid}.")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{_flag(name)} must be at least 0 and below 1, not {getattr(self, name)}.")
        for name, choices in (("device", DEVICES), ("precision", PRECISIONS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{_flag(name)} must be {', '.join(choices)}, not {getattr(self, name)!r}.")
        for name in ("diffaugment", "bcr_augment"):
            try:
                parse_policy(getattr(self, name))
            except ValueError as e:
                raise ValueError(f"{_flag(name)}: {e}") from None
        if self.bcr_weight > 0 and not parse_policy(self.bcr_augment):
            raise ValueError("--bcr-weight needs an augmentation to be consistent under: give --bcr-augment, "
                             "e.g. translation.")
        if not 0 <= self.topk <= 1:
            raise ValueError(f"--topk is the share of fakes G's loss keeps at the end, from 0 (off) to 1, "
                             f"not {self.topk}.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training config field(s) {sorted(unknown)}.")
        return cls(**values)


def from_flags(flags: dict, saved: dict | None = None) -> TrainConfig:
    """A run's config: the defaults, then a resumed run's ``saved`` config, then the train.py ``flags``
    given (by field name; MODEL_FLAGS, and the RESUME_FIXED fields a resumed run saved, cannot change)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}
    unknown = set(flags) - fields - set(MODEL_FLAGS)
    if unknown:
        raise ValueError(f"unknown training option(s) {sorted(unknown)}.")
    if "inception_sha256" in flags:  # a hash is one network, whatever its case
        flags = {**flags, "inception_sha256": flags["inception_sha256"].lower()}
    # Saved absolute, so a resumed run finds them from any working directory.
    flags = {k: os.path.abspath(v) if k in ("data", "eval_data", "cache_dir", "inception") and v else v
             for k, v in flags.items()}
    if saved is not None:
        cfg = TrainConfig.from_dict(saved)
        changed = {k for k in MODEL_FLAGS if k in flags and flags[k] != getattr(cfg.model, k)}
        # Only what the run saved is fixed: a run from before inception_sha256 was saved may name its network.
        changed |= {k for k in RESUME_FIXED if k in saved and flags.get(k, saved[k]) != saved[k]}
        if changed:
            raise ValueError(f"cannot change {', '.join(_flag(k) for k in sorted(changed))} when resuming: a run keeps "
                             "its networks, its validation split and the network its FIDs are measured with (start a "
                             "new run with another --out to change them).")
    else:
        cfg = TrainConfig(preset=flags.get("preset", TrainConfig.preset))
        cfg.model = preset(cfg.preset, flags.get("image_size", ModelConfig.image_size),
                           **{k: flags[k] for k in MODEL_FLAGS if k in flags and k != "image_size"})
    for k in fields - {"preset"}:
        if k in flags:
            setattr(cfg, k, flags[k])
    return cfg


def resume_changes(saved: dict, cfg: TrainConfig) -> list[str]:
    """What ``cfg`` changes of the RESUME_ANNOUNCED settings of the run it resumes, whose config was ``saved``,
    as "--seed 0 -> 5"; empty when it trains on as that run would have."""
    old = TrainConfig.from_dict(saved)
    return [f"{_flag(k)} {getattr(old, k)!r} -> {getattr(cfg, k)!r}" for k in RESUME_ANNOUNCED
            if getattr(cfg, k) != getattr(old, k)]


def _flag(field_name: str) -> str:
    """The train.py flag that sets a TrainConfig or ModelConfig field."""
    return "--" + field_name.replace("_", "-")
