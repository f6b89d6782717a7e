# Board `esp32s3`: an ESP32-S3 module such as ESP32-S3-WROOM-1 on an ESP32-S3-DevKitC-1, on the
# shared ESP32 HAL (boards/common/esp32hal.py). Wiring, from board.json "pins":
#   SHT3x sensor   SDA GPIO8, SCL GPIO9, 3V3, GND (address 0x44)
#   relay module   IN GPIO4 (active high)
#   status LED     the on-board WS2812 RGB LED on GPIO48 (DevKitC-1 v1.0; v1.1 uses GPIO38:
#                  change "led" in board.json)
#   button         GPIO0, the BOOT button (active low, internal pull-up)
from esp32hal import Esp32Hal, SensorError

__all__ = ["Hal", "SensorError"]  # SensorError: what the application may catch


class Hal(Esp32Hal):
    """The ESP32-S3 build of the thermostat: Hal(board_json=None, machine=None, log=print)."""

    BOARD = "esp32s3"
