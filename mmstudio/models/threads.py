"""How many CPU threads torch uses for inference: the machine's cores unless the user says otherwise.

torch's intra-op thread count belongs to the thread that sets it (OpenMP keeps it per thread), so the
thread that runs the models (the CLI's main thread, the app's worker) applies it itself, before each use.
The default is what torch chose at start (the machine's physical cores, or $OMP_NUM_THREADS); under
torchrun each of the node's processes takes an equal share of them, so N processes do not fight over
the same cores (--threads or $MMSTUDIO_THREADS set a count for each).
"""

from __future__ import annotations

import functools
import os


@functools.cache
def machine_threads() -> int:
    """torch's own count, read once, before mmstudio changes it (torch is imported only when needed)."""
    import torch

    return torch.get_num_threads()


def default_threads() -> int:
    """The machine's cores, shared equally among torchrun's processes on this node.

    torchrun sets OMP_NUM_THREADS=1 in every process it starts (unless set already), which would leave a
    16-core node's two processes one core each: under torchrun the share is of the CPUs this process may
    run on."""
    local = os.environ.get("LOCAL_WORLD_SIZE", "")
    if local.isdigit() and int(local) > 1:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cpus // int(local))
    return machine_threads()


def use_threads(count: int = 0) -> int:
    """Run torch's CPU work in this thread on `count` threads (0: the default); the count in use."""
    import torch

    wanted = count or default_threads()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return wanted
