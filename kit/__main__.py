"""``python -m kit`` (and ``torchrun -m kit train ...``)."""

from kit.cli import main

main()
