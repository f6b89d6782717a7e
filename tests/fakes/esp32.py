# A fake `esp32` for the unix port: Partition is the strict fake of boards/unix/fakepart.py
# (power the chip on with fakepart.boot(flash) first).
from fakepart import Partition

__all__ = ["Partition"]
