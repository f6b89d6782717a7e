# Board `esp32`: an ESP32 (rev v3.0+) module such as ESP32-WROOM-32E on a DevKit, on the shared
# ESP32 HAL (boards/common/esp32hal.py). Wiring, from board.json "pins":
#   SHT3x sensor   SDA GPIO21, SCL GPIO22, 3V3, GND (address 0x44)
#   relay module   IN GPIO26 (active high), 5V or 3V3 as the module wants, GND
#   status LED     GPIO2 (the blue LED of most DevKits; on a DevKitC add an LED and 330 ohm)
#   button         GPIO0, the BOOT button (active low, internal pull-up)
from esp32hal import Esp32Hal, SensorError

__all__ = ["Hal", "SensorError"]  # SensorError: what the application may catch


class Hal(Esp32Hal):
    """The ESP32 build of the thermostat: Hal(board_json=None, machine=None, log=print)."""

    BOARD = "esp32"
