// MicroPython board definition: the thermostat on an ESP32-S3.
#define MICROPY_HW_BOARD_NAME               "IoT thermostat (ESP32-S3)"
#define MICROPY_HW_MCU_NAME                 "ESP32-S3"
#define MICROPY_PY_BLUETOOTH                (0)
// REPL on the UART port (the DevKitC-1's USB-UART bridge) as well as native USB.
#define MICROPY_HW_ENABLE_UART_REPL         (1)
