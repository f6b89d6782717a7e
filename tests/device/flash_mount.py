# Device side of test_flash: mount_data formats only a blank partition and never touches
# one it cannot mount; mount_factory never formats; /data works beside the host files.
# Usage: micropython flash_mount.py IMAGE blank|garbage
import os
import sys
import vfs

import flash

image, mode = sys.argv[1], sys.argv[2]
fl = flash.Flash(image)

if mode == "blank":
    assert fl.partition("vfs").is_blank()
    flash.mount_data(fl)
    assert fl.ops > 0  # formatted
    with open("/data/hello.txt", "w") as f:
        f.write("hello")
    # The host filesystem is still there beside the mount.
    assert "data" in os.listdir("/")
    with open(image, "rb") as f:
        assert len(f.read(16)) == 16
    vfs.umount("/data")
    ops = fl.ops
    flash.mount_data(fl, "/data2")  # mounts what is there now, no format
    assert fl.ops == ops
    with open("/data2/hello.txt") as f:
        assert f.read() == "hello"
    vfs.umount("/data2")
    # An empty fctry is never formatted.
    try:
        flash.mount_factory(fl)
        raise AssertionError("blank fctry mounted")
    except OSError:
        pass
    assert fl.ops == ops and fl.partition("fctry").is_blank()
elif mode == "garbage":
    try:
        flash.mount_data(fl)
        raise AssertionError("mounted garbage")
    except OSError:
        pass
    assert fl.ops == 0  # nothing erased, nothing programmed
    assert "/data" not in [m[1] for m in vfs.mount()]
else:
    raise ValueError(mode)
print("OK")
