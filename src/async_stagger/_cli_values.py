"""Command-line values shared by the tracer and the demo are named and
parsed here (the demo imports this, not the tracer: no import circle)."""

from __future__ import annotations

import argparse
import math

#: How the command line names the program in usage and messages.
PROG = "python -m async_stagger"


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds, got {text!r}"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a finite number of seconds >= 0, got {text!r}"
        )
    return value


def _positive_seconds(text: str) -> float:
    value = _non_negative_seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds > 0, got {text!r}"
        )
    return value
