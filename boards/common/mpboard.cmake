# Shared part of boards/<board>/mpconfigboard.cmake: the product's MicroPython board definition.
# Build from ports/esp32 of MicroPython (recipe: docs/real-board.md):
#   idf.py -D MICROPY_BOARD_DIR=<repo>/boards/<board> [-D IOT_FLASH_SIZE=8MB]
#          [-D IOT_LEVEL=production [-D IOT_SEALED=1]] -B build-<board> build
# Sets: ESP-IDF defaults (MicroPython's base, then ours; later files win), the board's partition
# table by absolute path, and the frozen manifest. Expects IOT_CHIP_SDKCONFIG (chip fragments of
# MicroPython's boards/ folder) from the including file.
get_filename_component(IOT_COMMON_DIR ${CMAKE_CURRENT_LIST_DIR} ABSOLUTE)

if(IOT_FLASH_SIZE STREQUAL "8MB")
    set(IOT_PARTITIONS ${MICROPY_BOARD_DIR}/partitions-8MiB.csv)
    set(IOT_FLASHSIZE "CONFIG_ESPTOOLPY_FLASHSIZE_4MB=n\nCONFIG_ESPTOOLPY_FLASHSIZE_8MB=y\n")
elseif(NOT IOT_FLASH_SIZE OR IOT_FLASH_SIZE STREQUAL "4MB")
    set(IOT_PARTITIONS ${MICROPY_BOARD_DIR}/partitions.csv)
    set(IOT_FLASHSIZE "CONFIG_ESPTOOLPY_FLASHSIZE_4MB=y\nCONFIG_ESPTOOLPY_FLASHSIZE_8MB=n\n")
else()
    message(FATAL_ERROR "IOT_FLASH_SIZE must be 4MB or 8MB (board.json variants)")
endif()

# Generated, because an sdkconfig file cannot name a path relative to the board folder.
file(WRITE ${CMAKE_BINARY_DIR}/sdkconfig.iot-partitions
    "CONFIG_PARTITION_TABLE_CUSTOM=y\n"
    "CONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"${IOT_PARTITIONS}\"\n"
    "CONFIG_PARTITION_TABLE_OFFSET=0x8000\n"
    "${IOT_FLASHSIZE}")

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    ${SDKCONFIG_IDF_VERSION_SPECIFIC}
    ${IOT_CHIP_SDKCONFIG}
    ${IOT_COMMON_DIR}/sdkconfig.iot
    ${CMAKE_BINARY_DIR}/sdkconfig.iot-partitions
)
if(IOT_LEVEL STREQUAL "production")
    list(APPEND SDKCONFIG_DEFAULTS ${IOT_COMMON_DIR}/sdkconfig.production)
elseif(IOT_LEVEL AND NOT IOT_LEVEL STREQUAL "development")
    message(FATAL_ERROR "IOT_LEVEL must be development or production")
endif()
# IOT_SEALED=1: the production image without any REPL (mpconfigboard.h), for boards that are
# already provisioned: the factory line provisions with the unsealed production image first.
if(IOT_SEALED)
    if(NOT IOT_LEVEL STREQUAL "production")
        message(FATAL_ERROR "IOT_SEALED=1 needs IOT_LEVEL=production")
    endif()
    list(APPEND MICROPY_DEF_BOARD IOT_SEALED=1)
endif()

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)
