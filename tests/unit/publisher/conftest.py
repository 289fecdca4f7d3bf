from tests.unit.memory_fixtures import pods, server

__all__ = ["pods", "server"]
