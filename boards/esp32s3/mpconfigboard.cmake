# MicroPython board definition: the thermostat on an ESP32-S3. docs/real-board.md
set(IDF_TARGET esp32s3)
set(IOT_CHIP_SDKCONFIG boards/sdkconfig.usb)
include(${CMAKE_CURRENT_LIST_DIR}/../common/mpboard.cmake)
