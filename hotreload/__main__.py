"""``python -m hotreload`` is the ``hotreload`` command."""

from .cli import main

if __name__ == "__main__":
    main()
