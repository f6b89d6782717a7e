# Power-on entry of a real board, frozen into the firmware as main.py: a frozen main.py runs
# instead of any main.py on the data filesystem, and only frozen modules are importable from
# here on, so nothing stored in flash outside the verified app slot can shadow the boot stage.
#
# MicroPython enables Ctrl-C for each script it runs, and a script that ends, or is
# interrupted, leaves the serial console at the REPL. So the first statement takes Ctrl-C
# away; esp32board.main() gives it back on a development build and on a production board
# that is not provisioned yet (the factory line needs the raw REPL), and a production build
# restarts rather than end here (docs/interfaces.md, "Serial console").
import micropython

micropython.kbd_intr(-1)
try:
    import sys

    sys.path[:] = [".frozen"]
    import esp32board

    esp32board.main(kbd_intr=micropython.kbd_intr)
finally:
    try:
        import trust_anchors  # noqa: F401  (frozen only into a production build)

        import machine

        machine.reset()  # whatever ended main(): never the REPL prompt
    except ImportError:
        micropython.kbd_intr(3)
