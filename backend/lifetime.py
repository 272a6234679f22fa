"""How long the processes of `run` and `demo` live: until a signal, or until whoever started them is gone.

- stop_signals(): SIGTERM, SIGINT and SIGHUP become KeyboardInterrupt in the main thread, so the command's
  `finally` stops what it started, whichever signal arrives (a terminal closing sends SIGHUP).
- die_with_parent(): Linux PR_SET_PDEATHSIG, so this process gets SIGTERM when its parent dies. `make run`
  and `make demo` need it: SIGTERM to make ends make without a word to its children, and the command would
  keep everything it started running under PID 1.
- child_preexec: the same for every process the command starts (redis-server, workers, gunicorn, the
  stand-in, Label Studio): if the command itself is killed with SIGKILL, its children still go.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _load_prctl():
    # Loaded once, in the parent: child_preexec runs between fork and exec, where nothing may be imported or
    # looked up (ctypes.util.find_library would even start a subprocess).
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # the process's own symbols: glibc's prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _prctl_pdeathsig(sig: int) -> bool:
    return _PRCTL is not None and _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel for `sig` when the parent exits; if it already has, send it now. False where unsupported."""
    parent = os.getppid()
    armed = _prctl_pdeathsig(sig)
    if armed and os.getppid() != parent:
        os.kill(os.getpid(), sig)  # the parent died before the request took effect
    return armed


def child_preexec() -> None:
    """preexec_fn for started processes: SIGTERM when the starting process dies (runs in the child)."""
    _prctl_pdeathsig(signal.SIGTERM)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_signals() -> None:
    """SIGTERM, SIGINT and SIGHUP raise KeyboardInterrupt (main thread only, as Python runs handlers there)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)


def ignore_stop_signals() -> None:
    """During the clean-up: a second Ctrl-C or SIGTERM must not cut it short."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
