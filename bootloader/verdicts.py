# Verdicts: the one table of the precise results the device gives for a refused bundle, slot or
# request (bundle.Reject.verdict, the "verdict" of the update API, the pulled-update events and
# the simulator's service channel). Callers use `verdicts.NAME`, never a literal. Frozen with
# the boot stage: each name costs one entry of this module's dictionary (callers import the
# module, not the names, so theirs do not grow); the meanings are comments, free on the
# device. docs/FORMAT.md's verdict table is generated from this file (tools/verdict_table.py;
# tests/host/test_verdicts.py checks it is up to date), so a verdict is added here, with its
# meaning, and nowhere else.
#   NAME = "NAME"  # meaning (one line; the value is the name: it goes on the wire as is)

# The bundle, in the order the device checks it (bundle.py).
BAD_MAGIC = "BAD_MAGIC"  # not an update bundle: the first four bytes are not IOTB
BAD_FORMAT = "BAD_FORMAT"  # unknown format, kind or algorithm; reserved bytes set
BAD_LENGTH = "BAD_LENGTH"  # a length in the header is outside its bound
TRUNCATED = "TRUNCATED"  # the bundle ended inside its header, prefix or a file
BAD_MANIFEST_HASH = "BAD_MANIFEST_HASH"  # the manifest does not match the header's SHA-256
BAD_CERT = "BAD_CERT"  # the update-key certificate is malformed
UNKNOWN_ROOT = "UNKNOWN_ROOT"  # the certificate is not signed by a pinned root key
BAD_CERT_SIGNATURE = "BAD_CERT_SIGNATURE"  # the root's signature on the update key is bad
KEY_REVOKED = "KEY_REVOKED"  # the update key's serial is below the key floor
KEY_EXPIRED = "KEY_EXPIRED"  # the update key's certificate has expired
BAD_SIGNATURE = "BAD_SIGNATURE"  # the signature over the header is invalid
BAD_MANIFEST = "BAD_MANIFEST"  # the manifest is not JSON or breaks a rule
WRONG_KIND = "WRONG_KIND"  # an app bundle where firmware is expected, or the reverse
WRONG_PRODUCT = "WRONG_PRODUCT"  # the bundle is for another product
WRONG_BOARD = "WRONG_BOARD"  # the bundle does not list this board
DOWNGRADE = "DOWNGRADE"  # security_version is below the security floor
EXPIRED = "EXPIRED"  # the bundle's expiry time has passed
TOO_LARGE = "TOO_LARGE"  # the payload does not fit the slot's capacity

# The payload and the slots (slots.py, fwupdate.py).
BAD_FILE_HASH = "BAD_FILE_HASH"  # a file (or the image read back) fails its SHA-256
EXTRA_BYTES = "EXTRA_BYTES"  # bytes after the last file of the payload
EXTRA_FILE = "EXTRA_FILE"  # a slot holds files its manifest does not list
EMPTY_SLOT = "EMPTY_SLOT"  # the slot holds no installed bundle (no signed prefix)
BUSY = "BUSY"  # an update is installing, or the last is still on trial
RESUME = "RESUME"  # a half-written slot cannot resume: start afresh
NO_RECORD = "NO_RECORD"  # the partition was not installed from a bundle
BAD_IMAGE = "BAD_IMAGE"  # not an ESP app image for this chip and version
IMAGE_REFUSED = "IMAGE_REFUSED"  # the new firmware failed its first boot: rolled back

# Transfer and service (pullstate.py, updater.py, the simulator's service channel).
BAD_HASH = "BAD_HASH"  # the download does not match the offer's SHA-256
IO_ERROR = "IO_ERROR"  # the flash or filesystem failed during the update
BAD_REQUEST = "BAD_REQUEST"  # an unreadable or unknown service-channel request
