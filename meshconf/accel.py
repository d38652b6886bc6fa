"""Compiled, frozen networks (torch.compile / inductor with `freezing=True`) and when they pay.

Freezing folds the weights into the graph as constants, so inductor can prepack them for oneDNN and fuse the
ReLUs and concatenations into the convolutions. The module is compiled in place (`nn.Module.compile`): its type,
attributes and `state_dict()` stay the same and only `model(x)` takes the fast path. Freezing needs gradients off,
which every meshconf caller has (`torch.inference_mode`).

Measured on 2-core AMD EPYC Zen 4 (AVX512-BF16, no AMX), interleaved in one process: OpenPose 184x184, compiled
fp32 0.96-1.02x eager in two benchmark runs (benchmarks/speed.py; one earlier probe said 1.17x), eager bf16 204 ms
against compiled bf16 166 ms; HMR batch 16, folded fp32 1010 ms against compiled 902 ms, bf16 483 / 417 ms. Compiling costs
8-30 s per network and shape in a fresh process and 2.6-7.5 s with inductor's on-disk cache warm (dynamo still
traces), so it pays only when a job runs hundreds of forwards: `COMPILE_MIN_ITEMS`.

Every distinct input shape compiles again (`dynamic=False`: static shapes give the fastest kernels), so jobs that
run fixed batches pad their last, short batch (`call_padded`) instead of compiling a second graph for it.
"""

from __future__ import annotations

import os

COMPILE_POLICIES = ("auto", "on", "off")
# A job compiles under "auto" when it will run at least this many crops: at ~10-20% saved per forward (60 ms of an
# OpenPose fp32 forward on Zen 4) a 10-40 s compilation pays after a few hundred.
COMPILE_MIN_ITEMS = 512


def inductor_cache_dir() -> str:
    """Inductor's on-disk cache, beside meshconf's model files (its keys include the torch version, the graph
    and the CPU's instruction set, so one folder serves every machine and upgrade safely)."""
    from .assets.catalog import default_data_dir

    return os.environ.get("TORCHINDUCTOR_CACHE_DIR") or os.path.join(default_data_dir(), "inductor")


def compiled_parts(policy: str | bool | None, items: int | None = None, precision: str = "float32") -> tuple:
    """Which networks a job compiles: "on" both, "off" none; "auto", for a job of at least COMPILE_MIN_ITEMS
    crops, those that measured faster compiled: SPIN in both precisions (1.12-1.16x over folded eager at batch
    16), OpenPose in bfloat16 (1.23x); OpenPose in float32 measured 0.97-1.02x eager, so it stays eager."""
    if not wants_compile(policy, items):
        return ()
    if policy in ("on", True):
        return ("spin", "body")
    return ("spin", "body") if precision == "bfloat16" else ("spin",)


def wants_compile(policy: str | bool | None, items: int | None = None) -> bool:
    """The `--compile` decision: "on"/"off" as said; "auto" compiles only a job of at least COMPILE_MIN_ITEMS."""
    from .errors import MeshconfError

    if isinstance(policy, bool):
        return policy
    policy = policy or "auto"
    if policy not in COMPILE_POLICIES:
        raise MeshconfError(f"--compile must be one of {', '.join(COMPILE_POLICIES)}, got {policy!r}")
    if policy == "auto":
        return items is not None and items >= COMPILE_MIN_ITEMS
    return policy == "on"


def compile_network(model):
    """Compile `model` (in eval mode, weights final) in place with frozen weights; returns it. Its forward then
    runs inductor's code for every input shape it has seen (each new shape compiles once)."""
    import torch

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", inductor_cache_dir())
    # Enough graphs for the shapes a job meets (batch sizes, a few image sizes) before dynamo falls back to eager.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 16)
    model.eval()
    model.compile(dynamic=False, options={"freezing": True})
    model.meshconf_compiled = True
    return model


def is_compiled(model) -> bool:
    return bool(getattr(model, "meshconf_compiled", False))


def call_padded(model, x, batch: int):
    """`model(x)` for a compiled model that runs fixed batches of `batch`: a shorter `x` is padded with copies of
    its last row and the outputs trimmed, so no second graph is compiled. Eager models run `x` as it is. Outputs
    are a tensor or a tuple of tensors, first dimension the batch."""
    n = x.shape[0]
    if not is_compiled(model) or n >= batch:
        return model(x)
    import torch

    padded = torch.cat([x, x[-1:].expand(batch - n, *x.shape[1:])])
    out = model(padded)
    return out[:n] if isinstance(out, torch.Tensor) else tuple(o[:n] for o in out)
