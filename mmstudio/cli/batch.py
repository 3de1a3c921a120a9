"""Where a batch command's results go: stdout, an --out file, or under torchrun one part per process.

`mmstudio caption|ask|match|index ... --out FILE.jsonl` writes results as they come and `--resume` goes
on after a kill. Under `torchrun --nproc_per_node=N [--nnodes=M ...] -m mmstudio ...` every process takes
every N-th input (its rank's share) on its own device and writes its own part beside FILE
(`FILE.rank2-of-4`); rank 0 writes FILE itself. When all are done, rank 0 gathers the parts (through
torch.distributed, so nodes need not share a disk), merges them into FILE in input order, and each process
deletes its part. A rerun with --resume reads FILE and the parts, so a run killed on any node, at any
moment (merging included), goes on where it stopped, with the same or another number of processes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Hashable, Sequence

from mmstudio.errors import MMStudioError
from mmstudio.models.base import DEVICE_ENV
from mmstudio.results_file import ResultsFile, merge, read_groups

# Long: a rank done early waits for the slowest at the end; torchrun stops them all if one fails.
WAIT = timedelta(days=7)


@dataclass(frozen=True)
class Ranks:
    """This process's place under torchrun (rank 0 of 1 outside it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> "Ranks":
        env = os.environ
        if not env.get("WORLD_SIZE", "").isdigit() or int(env["WORLD_SIZE"]) <= 1:
            return cls()
        return cls(int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))

    @property
    def many(self) -> bool:
        return self.world > 1

    def device(self, requested: str | None) -> str | None:
        """Each process on its own GPU: auto or cuda becomes cuda:LOCAL_RANK where CUDA is there."""
        if not self.many or (requested or os.environ.get(DEVICE_ENV) or "auto") not in ("auto", "cuda"):
            return requested
        import torch

        if not torch.cuda.is_available():
            return requested
        return f"cuda:{self.local_rank % torch.cuda.device_count()}"

    def start(self) -> None:
        """Join the other processes (gloo, on the CPU: what goes between them is the done inputs at the start and
        the parts' lines at the end, never tensors)."""
        if self.many:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo", timeout=WAIT)

    def stop(self) -> None:
        if self.many:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def from_rank0(self, value):
        """Rank 0's `value`, on every process."""
        if not self.many:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list:
        """Every process's `value`, in rank order, on rank 0 (elsewhere: [])."""
        if not self.many:
            return [value]
        import torch.distributed as dist

        out = [None] * self.world if self.rank == 0 else None
        dist.gather_object(value, out, dst=0)
        return out or []

    def barrier(self) -> None:
        if self.many:
            import torch.distributed as dist

            dist.barrier()


class BatchOutput:
    """The --out file (or this process's part of it) of a batch command, and what is left to do.

    `key` names an input in its records ("image", or "line" of an --input file); `grouped`: an input may
    give several lines."""

    def __init__(self, out: Path | None, *, resume: bool, key: str = "image", grouped: bool = False,
                 ranks: Ranks | None = None):
        self.ranks = ranks or Ranks.from_environment()
        self.key = key
        self.out = out
        self.file: ResultsFile | None = None
        self.done: set = set()  # inputs whose results are already written (here or in another process's part)
        self.failed_before = False  # one of them is an error line
        if resume and out is None:
            raise MMStudioError("--resume goes with --out FILE.jsonl: the file to go on with")
        if self.ranks.many and out is None:
            raise MMStudioError("under torchrun give --out FILE.jsonl: each process writes its part of the "
                                "results and the first merges them there")
        if out is None:
            return
        self.ranks.start()
        # Rank 0 reads FILE (and parts left by an earlier run with another process count), then tells all.
        problem, done = None, set()
        if self.ranks.rank == 0:
            try:
                self.file = ResultsFile(out, resume=resume, key=key, grouped=grouped)
                done = set(self.file.done)
                if resume:
                    for part in self._parts():
                        if part != self._part():
                            done |= {value for value, _ in read_groups(part.read_bytes(), key)[0]}
            except MMStudioError as exc:
                problem = str(exc)
        problem, done = self.ranks.from_rank0((problem, done))
        if problem:
            raise MMStudioError(problem)
        if self.ranks.rank:
            self.file = ResultsFile(self._part(), resume=resume, key=key, grouped=grouped)
            done |= self.file.done
        self.done = done
        self.failed_before = self.file.failed_before

    def _part(self) -> Path:
        if self.ranks.rank == 0:
            return self.out
        return self.out.with_name(f"{self.out.name}.rank{self.ranks.rank}-of-{self.ranks.world}")

    def _parts(self) -> list[Path]:
        """Parts beside FILE on this machine, of this run or an earlier one."""
        return sorted(self.out.parent.glob(f"{self.out.name}.rank*-of-*"))

    def todo(self, inputs: Sequence, key_of=str) -> list:
        """This process's share of `inputs` that the results do not hold yet."""
        share = inputs[self.ranks.rank::self.ranks.world] if self.ranks.many else inputs
        return [item for item in share if key_of(item) not in self.done]

    def finish(self, order: Sequence[Hashable], failed: bool) -> bool:
        """After this process's inputs: merge the parts into FILE in `order` (rank 0). Whether the run failed an
        input: on rank 0, in any process; elsewhere always False."""
        if self.out is None:
            return failed
        failures = self.ranks.gather(failed)
        parts = [self.file.path.read_bytes()] if self.ranks.rank else []
        gathered = self.ranks.gather(parts)
        if self.ranks.rank == 0:
            local = self._parts()  # this run's parts on this machine, and any an earlier run left
            if self.ranks.many or local:
                sources = [self.out.read_bytes(), *(b for part in gathered for b in part),
                           *(p.read_bytes() for p in local)]
                count = merge(self.out, sources, order, self.key)
                print(f"{self.out}: {count} inputs merged from {self.ranks.world} processes", file=sys.stderr)
            for part in local:
                part.unlink(missing_ok=True)
        self.ranks.barrier()  # FILE holds every part now: each process deletes its own
        if self.ranks.rank:
            self.file.path.unlink(missing_ok=True)
        self.ranks.stop()
        # Rank 0 speaks for the run: torchrun stops the others when one exits non-zero, and says so at length.
        return any(failures) if self.ranks.rank == 0 else False
