# Device side of `iotctl vectors`: runs the boot stage's own verifier over test cases on stdin.
#   micropython vectors_runner.py ed25519|ecdsa-p256   (stdin: one command a line)
# Commands: "K <hex>" sets the public key for the following tests; "T <msg hex> <sig hex>"
# verifies ("-" stands for empty hex) and prints 1 (True), 0 (False) or E (raised, or returned
# something other than a bool).
# The last line is "END <n>" with the number of tests run; anything else is a crash. One line is
# read at a time, so memory does not depend on the size of the vector file.
import sys
from binascii import unhexlify


def _hex(s):
    return b"" if s == "-" else unhexlify(s)


def main():
    alg = sys.argv[1]
    if alg == "ed25519":
        from ed25519 import verify
    elif alg == "ecdsa-p256":
        from p256 import verify
    else:
        print("unknown algorithm", alg)
        sys.exit(2)
    key = b""
    n = 0
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "K":
            key = _hex(parts[1])
            continue
        msg = _hex(parts[1])
        sig = _hex(parts[2])
        try:
            ok = verify(key, msg, sig)
        except Exception as e:  # a verifier must never raise: report it as a failure, go on
            sys.stderr.write("test %d raised %r\n" % (n, e))
            ok = None
        sys.stdout.write("1" if ok is True else "0" if ok is False else "E")
        n += 1
        if n % 64 == 0:
            sys.stdout.write("\n")
    print()
    print("END", n)


main()
