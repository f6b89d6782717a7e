# Board `esp32c3`: an ESP32-C3 module such as ESP32-C3-MINI-1 on an ESP32-C3-DevKitM-1, on the
# shared ESP32 HAL (boards/common/esp32hal.py). Wiring, from board.json "pins":
#   SHT3x sensor   SDA GPIO4, SCL GPIO5, 3V3, GND (address 0x44)
#   relay module   IN GPIO6 (active high)
#   status LED     the on-board WS2812 RGB LED on GPIO8
#   button         GPIO9, the BOOT button (active low, internal pull-up)
from esp32hal import Esp32Hal, SensorError

__all__ = ["Hal", "SensorError"]  # SensorError: what the application may catch


class Hal(Esp32Hal):
    """The ESP32-C3 build of the thermostat: Hal(board_json=None, machine=None, log=print)."""

    BOARD = "esp32c3"
