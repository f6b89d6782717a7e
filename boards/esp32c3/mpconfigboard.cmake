# MicroPython board definition: the thermostat on an ESP32-C3. docs/real-board.md
set(IDF_TARGET esp32c3)
set(IOT_CHIP_SDKCONFIG boards/sdkconfig.riscv)
include(${CMAKE_CURRENT_LIST_DIR}/../common/mpboard.cmake)
