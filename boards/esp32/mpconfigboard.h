// MicroPython board definition: the thermostat on an ESP32 (rev v3.0+).
#define MICROPY_HW_BOARD_NAME               "IoT thermostat (ESP32)"
#define MICROPY_HW_MCU_NAME                 "ESP32"
#define MICROPY_PY_BLUETOOTH                (0)
