"""CUDA graphs for the training iteration: one launch replays every kernel of a step.

At batch 64 on an H200 an eager step spends most of its time issuing kernels from Python (the
project's trainer used under 1% of the card's bf16 rate). A CUDA graph records the kernels of one
iteration once and replays them for every later step. The iteration reads everything that changes
between steps from ``StepInputs``, whose storage stays put: batch indices, the EMA weight and the
top-k count are copied in before each replay, and its random generators are registered with the graph,
so a replay draws exactly the numbers an eager step with the same seeds draws.
"""
from __future__ import annotations

import warnings

import torch


class GraphedIteration:
    """Runs ``iterate`` (a step.Iteration) eagerly for ``warmup`` steps, then captures its body
    at the next step and replays that graph for every step after.

    Each call trains one step and returns its losses, like calling ``iterate`` itself. If capture
    fails, a warning names the error and training goes on eagerly.
    """

    def __init__(self, iterate, warmup: int = 3):
        self.iterate, self.warmup = iterate, warmup
        self.calls, self.graph, self.losses = 0, None, None
        self.eager = False  # set when capture failed

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        it = self.iterate
        self.calls += 1
        if self.eager:
            return it()
        if self.calls <= self.warmup:
            return self._warm_up()
        it.inputs.load(it.cfg, it.models.step, it.images.shape[0], it.ranks)
        if self.graph is None and not self._capture():
            return it()
        self.graph.replay()
        it.models.step += 1
        return self.losses

    def _warm_up(self) -> tuple[torch.Tensor, torch.Tensor]:
        # On a side stream, as CUDA graph capture asks: lazy initialisations (cuBLAS workspaces,
        # cuDNN plans, optimizer state, compiled kernels) happen here rather than in the graph.
        main, side = torch.cuda.current_stream(), torch.cuda.Stream()
        side.wait_stream(main)
        with torch.cuda.stream(side):
            losses = self.iterate()
        main.wait_stream(side)
        for loss in losses:
            loss.record_stream(main)
        return losses

    def _capture(self) -> bool:
        # Adam refuses capture unless told it is capturable (and warns if so told but run eagerly).
        set_capturable(self.iterate.models, True)
        try:
            graph = torch.cuda.CUDAGraph()
            for gen in self.iterate.inputs.generators:
                graph.register_generator_state(gen)  # (absent from older PyTorch: then eager, with the warning)
            with torch.cuda.graph(graph):
                losses = self.iterate.body()
        except Exception as error:  # noqa: BLE001 - any capture failure falls back to eager training
            warnings.warn(f"CUDA graph capture failed ({type(error).__name__}: {error}); "
                          "training goes on without CUDA graphs.", stacklevel=3)
            set_capturable(self.iterate.models, False)
            self.eager = True
            return False
        self.graph, self.losses = graph, losses
        return True


def use_cuda_graphs(flag: bool | None, device: torch.device, processes: int) -> bool:
    """Whether a run replays its steps as a CUDA graph: as ``flag`` (--cuda-graphs / --no-cuda-graphs)
    says, and when it says nothing, wherever graphs work: one process on a CUDA GPU."""
    if flag is None:
        return device.type == "cuda" and processes == 1
    return flag


def set_capturable(models, capturable: bool) -> None:
    """Mark both optimizers capturable by a CUDA graph, or not. The flag travels in a saved training
    state, and step.restore clears it."""
    for opt in (models.opt_g, models.opt_d):
        for group in opt.param_groups:
            group["capturable"] = capturable
