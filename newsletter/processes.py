"""Whether a process of this machine is gone: how a writer or sender that was killed is told
from one still at work, without waiting for a timeout."""

from __future__ import annotations

import os


def process_gone(pid: int) -> bool:
    """True only when no process has this id (one of another user still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
