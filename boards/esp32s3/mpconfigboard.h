// MicroPython board definition: the thermostat on an ESP32-S3.
#define MICROPY_HW_BOARD_NAME               "IoT thermostat (ESP32-S3)"
#define MICROPY_HW_MCU_NAME                 "ESP32-S3"
#define MICROPY_PY_BLUETOOTH                (0)
// ROMFS (MicroPython 1.25+, off by default on this port): vfs.VfsRom and vfs.rom_ioctl, which
// maps the partition labelled `romfs`, where the app's signed image runs in place.
#define MICROPY_VFS_ROM                     (1)

// Sealed production image (idf.py ... -D IOT_LEVEL=production -D IOT_SEALED=1, flashed after
// the board is provisioned; docs/real-board.md): no REPL on any console, so no Ctrl-C reaches
// even the first bytecodes of boot.py/main.py. Not built or tested here.
#if defined(IOT_SEALED) && IOT_SEALED
#define MICROPY_HW_ENABLE_UART_REPL         (0)
#define MICROPY_HW_ENABLE_USBDEV            (0)
#define MICROPY_HW_ESP_USB_SERIAL_JTAG      (0)
#else
// REPL on the UART port (the DevKitC-1's USB-UART bridge) as well as native USB.
#define MICROPY_HW_ENABLE_UART_REPL         (1)
#endif
