"""`python -m newsletter.cli`: the same command as the `newsletter` entry point."""

from newsletter.cli import main

main()
