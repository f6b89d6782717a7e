"""Host tools for the secure IoT reference firmware (library behind the `iotctl` CLI)."""

__version__ = "0.1.0"
