"""`python -m headstart` entry point, so that `torchrun -m headstart ...` works."""

from headstart.cli import main

if __name__ == "__main__":
    main()
