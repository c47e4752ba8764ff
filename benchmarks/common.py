"""Shared pieces of the benchmarks: timing with peak memory, machine labels, random models, figures."""

import os
import platform
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from pathpatch.files import write_atomic
from pathpatch.models import Task
from pathpatch.models.hook_flags import enable_patching_hooks
from pathpatch.patch.config import PatchConfig

TL_CONVENTION = PatchConfig(direction="denoise", normalize=False)  # TransformerLens' patching helpers denoise and return raw metrics


@dataclass(frozen=True)
class Measured:
    """What one timed call returned and cost."""

    out: object
    seconds: float
    peak_mb: float


class _RssSampler(threading.Thread):
    """Samples this process's resident memory every ``interval`` s (torch kernels release the GIL)."""

    def __init__(self, interval: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self._done = interval, rss_bytes(), threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._done.wait(self.interval)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return max(self.peak, rss_bytes())


def rss_bytes() -> int:
    """Resident memory of this process in bytes (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def measure(fn: Callable[[], object], device: str) -> Measured:
    """Run ``fn`` without gradients; return its result, wall seconds and peak memory in MB.

    CUDA: peak allocated tensor memory during the call. CPU: peak resident memory of the process
    during the call minus what it held before (sampled), i.e. what this call added.
    """
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        sampler = None
    else:
        before = rss_bytes()
        sampler = _RssSampler()
        sampler.start()
    start = time.perf_counter()
    with torch.no_grad():
        out = fn()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if cuda else sampler.stop() - before
    return Measured(out, seconds, peak / 2**20)


def best_of(fn: Callable[[], object], device: str, repeats: int) -> Measured:
    """``measure`` ``repeats`` times: the last result, the fastest time, the largest peak (steadier for short calls)."""
    runs = [measure(fn, device) for _ in range(repeats)]
    return Measured(runs[-1].out, min(r.seconds for r in runs), max(r.peak_mb for r in runs))


def machine(device: str) -> str:
    """One line naming the machine, thread count and library versions."""
    from importlib.metadata import version

    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return f"{name}, torch {torch.__version__}, transformer-lens {version('transformer-lens')}"


def random_model(
    n_layers: int, n_heads: int, d_model: int, d_mlp: int, d_vocab: int, device: str, edge_hooks: bool, n_ctx: int = 128
) -> HookedTransformer:
    """A seeded random pre-LN model (GELU MLPs); ``edge_hooks`` switches on the per-head input hooks.

    Activation-patching rows use the plain model, as a TransformerLens user would.
    """
    cfg = HookedTransformerConfig(
        n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_head=d_model // n_heads, d_mlp=d_mlp, n_ctx=n_ctx,
        d_vocab=d_vocab, act_fn="gelu_new", normalization_type="LN", seed=0, device=device,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg).eval()
    return enable_patching_hooks(model) if edge_hooks else model


def random_task(d_vocab: int, batch: int, seq: int, device: str) -> Task:
    """Random clean/corrupt tokens, logit difference read at the last position."""
    g = torch.Generator().manual_seed(0)
    tok = lambda shape: torch.randint(0, d_vocab, shape, generator=g)  # noqa: E731
    return Task("random", tok((batch, seq)), tok((batch, seq)), tok((batch, 1)), tok((batch, 1)), torch.tensor([seq - 1])).to(device)


def save_figure(fig, path: Path, caption: str) -> Path:
    """Label ``fig`` with ``caption`` (machine, date, command) and write it as PNG atomically."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the caption under the axis labels
    fig.text(0.01, 0.005, caption, fontsize=7, color="0.35", ha="left", va="bottom")
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path
