"""Privileged tier: placeholder until the namespace lab lands."""

from __future__ import annotations

import os
import shutil


class Namespace:
    """A network namespace of the test's own (not yet implemented)."""


def netns_unavailable_reason() -> str | None:
    """Why the privileged tier cannot run here, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    return None
