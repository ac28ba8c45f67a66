"""Memory measurement shared by the benchmarks: peak and sampled resident set size of this process."""

from __future__ import annotations

import resource
import threading
import time

MIB = 1024 * 1024


def current_rss_bytes() -> int:
    """Resident set size of this process now (VmRSS), in bytes; 0 where /proc is unavailable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss``, KiB on Linux), in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RssSampler(threading.Thread):
    """Samples VmRSS every ``interval_seconds`` until stopped; keeps the peak and a coarse trace."""

    def __init__(self, interval_seconds: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval_seconds = interval_seconds
        self.peak_bytes = 0
        self.trace: list[tuple[float, int]] = []
        self._stop_requested = threading.Event()
        self._began = time.perf_counter()

    def run(self) -> None:
        """Sample until :meth:`stop` is called."""
        while not self._stop_requested.is_set():
            rss = current_rss_bytes()
            self.peak_bytes = max(self.peak_bytes, rss)
            self.trace.append((round(time.perf_counter() - self._began, 2), rss))
            self._stop_requested.wait(self.interval_seconds)

    def stop(self) -> None:
        """Stop sampling and wait for the thread to finish."""
        self._stop_requested.set()
        self.join()
