"""Command line entry point: ``python -m async_stagger``."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def main(argv: list[str] | None = None) -> int:
    """Run the command line interface and return its exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m async_stagger",
        description="Happy Eyeballs connections for asyncio.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.parse_args(argv)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
