"""Progress of long runs: a tqdm bar on a terminal, plain log lines everywhere else.

A bar means nothing in a log file or a CI job, and a silent run of many minutes looks hung. So a
``Progress`` shows a bar when asked (the command line asks when stderr is a terminal) and otherwise
logs one line on the ``pathpatch.progress`` logger at most every ``every`` seconds, with the time left.
The command line shows that logger's INFO lines; library users see them once they configure logging.
"""

import logging
import time

log = logging.getLogger("pathpatch.progress")


class Progress:
    """Count finished units of work and report them as a bar or as log lines."""

    def __init__(self, total: int, desc: str, bar: bool = False, every: float = 10.0) -> None:
        from tqdm.auto import tqdm

        self.total, self.done, self.desc, self.every = total, 0, desc, every
        self.started = self.said = time.perf_counter()
        self.bar = tqdm(total=total, desc=desc, disable=not bar, leave=False)

    def update(self, n: int = 1) -> None:
        """Add ``n`` finished units; without a bar, log the count and the time left now and then."""
        self.done += n
        self.bar.update(n)
        now = time.perf_counter()
        if self.bar.disable and now - self.said >= self.every and self.done < self.total:
            left = (now - self.started) / self.done * (self.total - self.done)
            log.info("%s: %d of %d done, about %s left", self.desc, self.done, self.total, duration(left))
            self.said = now

    def close(self) -> None:
        self.bar.close()


def duration(seconds: float) -> str:
    """A duration in the unit a person reads best: ``42 s``, ``7.5 min``, ``3.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
