# Frozen into the firmware as boot.py so that a boot.py on the data filesystem is never run:
# MicroPython runs a frozen boot.py/main.py in preference to the filesystem's. All start-up
# work is in main.py (esp32board.main), after the boot stage has verified an app slot.
