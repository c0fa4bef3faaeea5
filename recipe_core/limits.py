"""Bounds a child process puts on itself: its address space, so a runaway fails there and not on the machine."""
from __future__ import annotations

import resource


def limit_memory(limit_bytes: int) -> None:
    """Cap this process's address space: past it an allocation fails in this process (a run ends failed, out of
    memory; a workbook is refused), never the machine's other work. Never raises the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))
