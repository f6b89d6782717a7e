# MicroPython board definition: the thermostat on an ESP32 (rev v3.0+). docs/real-board.md
set(IDF_TARGET esp32)
set(IOT_CHIP_SDKCONFIG "")
include(${CMAKE_CURRENT_LIST_DIR}/../common/mpboard.cmake)
