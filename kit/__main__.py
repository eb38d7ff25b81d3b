"""``python -m kit`` (and ``torchrun -m kit train ...``)."""

from kit.cli import main

if __name__ == "__main__":  # a worker process re-imports this module; it must not run the CLI
    main()
