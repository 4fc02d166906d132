"""``python -m diffkit``: the same as the ``diffkit`` executable (and ``torchrun -m diffkit``)."""

from diffkit.cli.entry import main

if __name__ == "__main__":
    main()
