// MicroPython board definition: the thermostat on an ESP32-C3.
#define MICROPY_HW_BOARD_NAME               "IoT thermostat (ESP32-C3)"
#define MICROPY_HW_MCU_NAME                 "ESP32C3"
#define MICROPY_PY_BLUETOOTH                (0)
#define MICROPY_HW_ENABLE_SDCARD            (0)
#define MICROPY_PY_MACHINE_I2S              (0)
// REPL on the UART port (the DevKitM-1's USB-UART bridge) as well as USB serial/JTAG.
#define MICROPY_HW_ENABLE_UART_REPL         (1)
