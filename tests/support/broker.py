"""The test broker: Tansu from the dev stack (`devstack.broker`), kept under this name for the tests."""

from devstack.broker import Broker, read_topic, tansu_binary, values
from devstack.procs import free_port

__all__ = ["Broker", "free_port", "read_topic", "tansu_binary", "values"]
