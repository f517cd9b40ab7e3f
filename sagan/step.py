"""The training step: the models and optimizers, one iteration (``d_steps`` D updates and a G update),
the EMA generator, the training state saved in checkpoints and restored from them, and the step's
speed settings.

Each D update makes its own batch of fakes and updates D on real and fake in a single forward pass
(with bCR, their augmented copies join that pass); then G is updated through the updated D on the
last D update's fakes (D's weight gradients switched off), all of them or, with top-k, the best scored.
Everything that changes from one step to the next is loaded into fixed storage first
(``StepInputs``), so the iteration's device work can be captured as a CUDA graph (graphs.py), and
randomness is a function of (seed, step), so a resumed run repeats an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from .augment import diff_augment, parse_policy
from .checkpoint import STATE_VERSION
from .config import TrainConfig
from .data import batch_indices, real_batch, stream_seed
from .distributed import Distributed
from .graphs import set_capturable
from .losses import consistency_loss, d_hinge_loss, g_hinge_loss, g_topk_hinge_loss, topk_count
from .networks import Discriminator, Generator


@dataclass
class Models:
    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    step: int = 0
    best_fid: float = math.inf  # lowest validation FID so far (checkpoints/best.pt holds that state)


def build_models(cfg: TrainConfig, device: torch.device) -> Models:
    torch.manual_seed(cfg.seed)
    G, D = Generator(cfg.model), Discriminator(cfg.model)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    G, D, G_ema = (m.to(device, memory_format=torch.channels_last) for m in (G, D, G_ema))
    # Fused Adam runs the whole update as one kernel per dtype group (CPU and CUDA).
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2), fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2), fused=True)
    return Models(G, D, G_ema, opt_g, opt_d)


def training_state(models: Models, cfg: TrainConfig) -> dict:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {"version": STATE_VERSION, "step": models.step, "config": dataclasses.asdict(cfg),
            "G": models.G.state_dict(), "D": models.D.state_dict(), "G_ema": models.G_ema.state_dict(),
            "opt_g": models.opt_g.state_dict(), "opt_d": models.opt_d.state_dict(), "rng": rng,
            "best_fid": models.best_fid}


def restore(models: Models, state: dict) -> None:
    """Load a training state into ``models``. Like torch's load_state_dict, the optimizers keep the
    state's own tensors where device and dtype already match: restore a loaded or copied state, not
    another live run's ``training_state``."""
    for name in ("G", "D", "G_ema", "opt_g", "opt_d"):
        getattr(models, name).load_state_dict(state[name])
    set_capturable(models, False)  # a graphed run saves capturable=True; its graph sets it again when captured
    models.step = int(state["step"])
    models.best_fid = float(state.get("best_fid", math.inf))
    torch.set_rng_state(state["rng"]["torch"])
    if torch.cuda.is_available():  # one state per GPU of the saving machine, which may have had more
        for index, cuda_state in enumerate(state["rng"].get("cuda", [])[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def ema_half_life_kimg(cfg: TrainConfig, world: int = 1) -> float:
    """The EMA's half-life in thousands of images: ``cfg.ema_kimg``, or when that is None, 10 kimg per 32
    images of the global batch, as StyleGAN2-ADA scales it (80 kimg at 256), so it spans about the same
    number of steps (312) whatever the batch."""
    return cfg.ema_kimg if cfg.ema_kimg is not None else cfg.batch_size * world * 10 / 32


def ema_decay(cfg: TrainConfig, step: int, world: int = 1) -> float:
    """Per-step EMA decay for the half-life ``ema_half_life_kimg`` (StyleGAN2-ADA's schedule), when
    each step trains on the global batch of ``world`` processes.

    The ramp-up shortens the half-life early in training, so the average never leans on the
    random weights of the first steps.
    """
    images_per_step = cfg.batch_size * world
    half_life = ema_half_life_kimg(cfg, world) * 1000
    if cfg.ema_rampup > 0:
        half_life = min(half_life, step * images_per_step * cfg.ema_rampup)
    return 0.5 ** (images_per_step / max(half_life, 1e-8))


@torch.no_grad()
def update_ema(g_ema: nn.Module, g: nn.Module, weight: torch.Tensor) -> None:
    """Move G_ema's weights ``weight`` (1 - decay, a 0-dim tensor) of the way to G's; copy the buffers."""
    ema_params = list(g_ema.parameters())
    steps = torch._foreach_sub(list(g.parameters()), ema_params)
    torch._foreach_mul_(steps, weight)
    torch._foreach_add_(ema_params, steps)
    torch._foreach_copy_(list(g_ema.buffers()), list(g.buffers()))


@dataclass(frozen=True)
class Recipe:
    """What an iteration trains with besides the networks: the TrainConfig fields step.py reads."""
    policy: tuple[str, ...] = ()        # DiffAugment policy of every image D sees
    d_steps: int = 1                    # D updates per G update
    bcr_weight: float = 0.0             # balanced consistency regularisation's lambda; 0: off
    bcr_policy: tuple[str, ...] = ()    # the augmentation bCR asks D to be consistent under
    topk: bool = False                  # G's loss on the best-scored fakes only (StepInputs.topk_k of them)

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> "Recipe":
        return cls(parse_policy(cfg.diffaugment), cfg.d_steps, cfg.bcr_weight, parse_policy(cfg.bcr_augment),
                   cfg.topk > 0)


class StepInputs:
    """What changes from one iteration to the next, in storage that stays put between iterations.

    ``load`` fills it for a step from the host; the iteration itself reads only these tensors and
    generators, so a CUDA graph captured once can replay every later step (see graphs.py).
    """

    def __init__(self, batch_size: int, device: torch.device, d_steps: int = 1):
        # This rank's images for each D update in turn: d_steps x batch_size of them.
        self.indices = torch.zeros(d_steps * batch_size, dtype=torch.long, device=device)
        self.flip_gen, self.z_gen, self.aug_gen = (torch.Generator(device) for _ in range(3))
        self.ema_weight = torch.zeros((), device=device)  # 1 - EMA decay of this step
        self.topk_k = torch.zeros((), dtype=torch.long, device=device)  # fakes G's top-k loss keeps

    @property
    def generators(self) -> tuple[torch.Generator, ...]:
        return self.flip_gen, self.z_gen, self.aug_gen

    def load(self, cfg: TrainConfig, step: int, num_images: int, ranks: Distributed) -> None:
        b, world = cfg.batch_size, ranks.world
        # Each step's D updates take consecutive global batches of one draw: the data stays a function of
        # (seed, step), and an epoch passes in num_images / (batch x world x d_steps) steps.
        idx = batch_indices(num_images, b * world * cfg.d_steps, cfg.seed, step)
        idx = idx.view(cfg.d_steps, b * world)[:, ranks.share(b)].reshape(-1)
        if self.indices.is_cuda:  # a pinned, asynchronous copy: a plain one would wait for the GPU every step
            idx = idx.pin_memory()
        self.indices.copy_(idx, non_blocking=True)
        for stream, gen in zip((0, 1, 2 + ranks.rank), self.generators):
            gen.manual_seed(stream_seed(cfg.seed, step, stream))
        self.ema_weight.fill_(1.0 - ema_decay(cfg, step + 1, world))
        if cfg.topk > 0:  # (each rank keeps the best of its own fakes)
            self.topk_k.fill_(topk_count(b, cfg.topk, step * b * world, cfg.topk_kimg))


def d_update(models: Models, G: nn.Module, D: nn.Module, real: torch.Tensor, z: torch.Tensor, recipe: Recipe,
             gen: torch.Generator, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """One D update on ``real`` and the fakes of ``z``; returns the fakes and D's hinge loss (without bCR's term,
    so the logged loss compares across recipes)."""
    b = real.shape[0]
    with autocast:
        fake = G(z)
        d_input = torch.cat([real, fake.detach()])
        if recipe.policy:
            d_input = diff_augment(d_input, recipe.policy, gen)
        if recipe.bcr_weight:  # the augmented copies in the same forward pass: D has no batch statistics
            d_input = torch.cat([d_input, diff_augment(d_input, recipe.bcr_policy, gen)])
        logits = D(d_input)
        hinge = d_hinge_loss(logits[:b], logits[b:2 * b])
        d_loss = hinge
        if recipe.bcr_weight:
            d_loss = hinge + recipe.bcr_weight * (consistency_loss(logits[:b], logits[2 * b:3 * b])
                                                  + consistency_loss(logits[b:2 * b], logits[3 * b:]))
    models.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    models.opt_d.step()
    return fake, hinge.detach()


def train_step(models: Models, G: nn.Module, D: nn.Module, real: torch.Tensor, z: torch.Tensor,
               policy: tuple[str, ...], gen: torch.Generator, autocast, recipe: Recipe | None = None,
               topk_k: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``recipe.d_steps`` D updates, one per equal chunk of ``real`` and ``z``, then one G update on the last
    D update's fakes; returns the mean D loss and the G loss as tensors (no host sync).

    ``G`` and ``D`` may be compiled wrappers of ``models.G`` and ``models.D``. ``policy`` is the DiffAugment
    policy (a ``recipe`` given carries its own); with ``recipe.topk``, G's loss keeps the ``topk_k`` best fakes.
    """
    recipe = recipe or Recipe(policy)
    # The G step needs no gradient all-reduce for D (D is not updated by it), and a second
    # forward through a DDP-wrapped spectral-norm D is the known in-place buffer pitfall.
    d_plain = D.module if isinstance(D, DDP) else D
    d_losses = []
    for real_j, z_j in zip(real.chunk(recipe.d_steps), z.chunk(recipe.d_steps)):
        fake, d_loss = d_update(models, G, D, real_j, z_j, recipe, gen, autocast)
        d_losses.append(d_loss)

    models.D.requires_grad_(False)  # G's update needs gradients through D, not of D's weights
    try:  # (a step that raises, such as a failed CUDA graph capture, must not leave D frozen)
        with autocast:
            logits = d_plain(diff_augment(fake, recipe.policy, gen) if recipe.policy else fake)
            g_loss = g_topk_hinge_loss(logits, topk_k) if recipe.topk else g_hinge_loss(logits)
        models.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        models.opt_g.step()
    finally:
        models.D.requires_grad_(True)
    return torch.stack(d_losses).mean(), g_loss.detach()


class Iteration:
    """One training iteration on this rank: draw the step's batches and latents, train, update the EMA.

    Calling it loads step ``models.step``'s inputs, runs ``body`` and advances the step. ``body`` is
    pure device work on fixed storage, the part graphs.py captures.
    """

    def __init__(self, models: Models, G: nn.Module, D: nn.Module, images: torch.Tensor, cfg: TrainConfig,
                 policy: tuple[str, ...], autocast, ranks: Distributed = Distributed()):
        self.models, self.G, self.D, self.images = models, G, D, images
        self.cfg, self.policy, self.autocast, self.ranks = cfg, policy, autocast, ranks
        self.recipe = dataclasses.replace(Recipe.from_config(cfg), policy=policy)
        self.inputs = StepInputs(cfg.batch_size, images.device, cfg.d_steps)

    def body(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, ranks, inputs, b = self.cfg, self.ranks, self.inputs, self.cfg.batch_size
        real = real_batch(self.images, inputs.indices, inputs.flip_gen, ranks.rank, ranks.world)
        z = torch.randn(cfg.d_steps, b * ranks.world, cfg.model.z_dim, generator=inputs.z_gen,
                        device=self.images.device)
        losses = train_step(self.models, self.G, self.D, real.contiguous(memory_format=torch.channels_last),
                            z[:, ranks.share(b)].reshape(-1, cfg.model.z_dim), self.policy, inputs.aug_gen,
                            self.autocast, self.recipe, inputs.topk_k)
        update_ema(self.models.G_ema, self.models.G, inputs.ema_weight)
        return losses

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.inputs.load(self.cfg, self.models.step, self.images.shape[0], self.ranks)
        losses = self.body()
        self.models.step += 1
        return losses


def make_autocast(device: torch.device, precision: str, cache: bool = True):
    """bf16 autocast, or nothing; CUDA graph capture needs ``cache=False`` (no cached weight casts)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


@contextlib.contextmanager
def cuda_speed_settings(device: torch.device):
    """TF32 matrix products and convolutions, and cuDNN autotuning, inside the block: how the
    project trains on a GPU. The previous settings come back after; on a CPU nothing changes."""
    flags = ((torch.backends.cuda.matmul, "allow_tf32"), (torch.backends.cudnn, "allow_tf32"),
             (torch.backends.cudnn, "benchmark"))
    saved = [getattr(module, name) for module, name in flags]
    if device.type == "cuda":
        for module, name in flags:
            setattr(module, name, True)
    try:
        yield
    finally:
        for (module, name), value in zip(flags, saved):
            setattr(module, name, value)


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    if not enabled:
        return model
    import torch._dynamo
    torch._dynamo.config.suppress_errors = True  # fall back to eager where compilation fails
    return torch.compile(model)
