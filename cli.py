#!/usr/bin/env python3
"""``python cli.py ...`` in a checkout: the same command line as the installed ``handgrad``."""

from handgrad.cli import main

if __name__ == "__main__":
    main()
