"""Signal names and numbers as docker reads a STOPSIGNAL (moby/sys signal.ParseSignal).

``SIGTERM``, ``term``, ``15`` and ``RTMIN+3`` all name a signal; Linux has 1 to 64.
BuildKit accepts any non-zero number that fits an int, but nothing can deliver one
above 64, so a number outside 1-64 is refused here, as are names docker does not know.
"""

from __future__ import annotations

import signal

MAX_SIGNAL = 64  # SIGRTMAX on Linux
_RTMIN = 34
_NAMED = {s.name.removeprefix("SIG"): int(s) for s in signal.Signals if s.name.startswith("SIG")}
_NAMED |= {"CLD": int(signal.SIGCHLD), "IOT": int(signal.SIGABRT), "POLL": int(signal.SIGIO)}
_NAMED |= {"RTMIN": _RTMIN, "RTMAX": MAX_SIGNAL}
_NAMED |= {f"RTMIN+{i}": _RTMIN + i for i in range(1, 16)}
_NAMED |= {f"RTMAX-{i}": MAX_SIGNAL - i for i in range(1, 15)}


def parse_signal(text: str) -> int | None:
    """The signal number ``text`` names, or None when it names none."""
    if text.isascii() and text.isdigit():
        number = int(text) if len(text) <= 3 else 0  # int() refuses over 4300 digits
        return number if 1 <= number <= MAX_SIGNAL else None
    return _NAMED.get(text.upper().removeprefix("SIG"))
