"""The CPU runtime: run any HyperEyes recipe through verl's own entry points on a laptop, at toy scale.

Switched on explicitly with `HYPERSEYES_CPU_RUNTIME=1` in the environment of the job (it must reach every
verl process, so it is an environment variable rather than a config value); never on by default. Then the
`verl.plugins` entry point registers, in every process:

- a `cpu` platform (`VERL_PLATFORM=cpu`): torch.distributed on gloo, Ray placement on declared (fake) GPUs;
- verl's FSDP/FSDP2 engines for the `cpu` device (verl registers them for cuda/npu only);
- an HF-transformers rollout, `actor_rollout_ref.rollout.name=hf`: a Ray actor per replica that generates
  with log-probs, scores prompts for the OPD teacher and receives the trainer's weight sync.

What each piece needs from verl is in the module docstrings; `patches/README.md` lists what is patched.
"""
from __future__ import annotations

import os

ENV = "HYPERSEYES_CPU_RUNTIME"
ROLLOUT_NAME = "hf"
PLATFORM_NAME = "cpu"


def requested() -> bool:
    """True when this process was started with the CPU runtime switched on."""
    return os.getenv(ENV, "").strip().lower() in ("1", "true", "yes", "on")
