"""Framework integrations: the glue an application would otherwise write by hand.

Each integration is a module of its own with an extra of its own (``hotreload.integrations.fastapi``
needs ``pip install 'hotreload[fastapi]'``); they build on the subscriber and the cache, never on
the daemon.
"""
