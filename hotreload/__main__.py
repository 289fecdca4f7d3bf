"""``python -m hotreload``: the same as the ``hotreload`` command."""

from .cli import main

if __name__ == "__main__":
    main()
