"""Bad samples in pre-training data (a missing or truncated image, a non-UTF-8 caption, a corrupt shard member, a
cut tar): skipped, counted, the first few named, never the end of a multi-day run by themselves.

Counting happens where the data is read, inside dataloader workers: each process keeps a `SkipLog`, and every
sample handed out carries the number of bad samples skipped since the previous one (`"skipped"` in the sample
dict). Summed over a batch, that number reaches the main process with the batch, where `BadSampleHook`
(rils_bench.train.hooks) logs the running total, stores it in the exported checkpoint and stops the run when the
skipped fraction passes the configured limit.
"""

from __future__ import annotations

import sys

NAMED_PER_PROCESS = 5  # bad samples named one line each per process; later ones are only counted


class SkipLog:
    """Skipped samples of one process since the last sample it handed out."""

    def __init__(self) -> None:
        self.pending = 0
        self.named = 0

    def skip(self, what: str) -> None:
        self.pending += 1
        if self.named < NAMED_PER_PROCESS:
            self.named += 1
            more = (
                " (further bad samples of this reader are counted, not named)"
                if self.named == NAMED_PER_PROCESS
                else ""
            )
            print(f"rils-bench: skipped bad sample: {what}{more}", file=sys.stderr, flush=True)

    def take(self) -> int:
        """The count since the last call, reset to 0."""
        count, self.pending = self.pending, 0
        return count


SHARD_SKIPS = SkipLog()  # the WebDataset readers of this process (one per dataloader worker after the fork)


def skip_shard_error(exn: Exception) -> bool:
    """webdataset handler: count and name the failure (its message carries the shard / member), go on."""
    SHARD_SKIPS.skip(" ".join(str(a) for a in exn.args) or type(exn).__name__)
    return True
