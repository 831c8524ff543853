"""Peak memory of this process: host RSS and accelerator memory."""
from __future__ import annotations

import resource
import sys

import torch


class PeakMemory:
    """Reset the accelerator's peak counter at construction; `read()` reports peaks since."""

    def __init__(self):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def read(self) -> dict[str, float | None]:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in KiB on Linux and bytes on macOS.
        rss_mib = rss / 1024 if sys.platform != "darwin" else rss / 2**20
        gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        return {"peak_host_rss_mib": round(rss_mib, 1), "peak_device_mib": None if gpu is None else round(gpu, 1)}
