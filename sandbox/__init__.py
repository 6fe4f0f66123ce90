"""A local simulator of the NowPayments REST API, faithful to shared/nowpayments-api.md."""

from sandbox.server import SandboxServer

__all__ = ["SandboxServer"]
