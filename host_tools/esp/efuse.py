"""eFuses of ESP32 chips (espefuse): where espefuse works (a port or virtual eFuses), the
chip's security state read from espefuse's JSON summary, and the production burn: planned,
shown, confirmed, checked on a blank chip, burnt in ESP-IDF's order and read back."""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeviceError, KeyFileError, UsageError
from .boards import CHIPS, load_board
from .secureboot import key_paths, prepare_keys
from .tools import run_tool, tool_argv


@dataclass(frozen=True)
class Target:
    """Where espefuse works: a serial port, or virtual eFuses persisted in a file."""
    chip: str
    port: str = None
    virt: str = None

    def espefuse(self, *cmd):
        where = (["--virt", "--path-efuse-file", self.virt] if self.virt
                 else ["--port", self.port] if self.port else [])
        return tool_argv("espefuse", "--chip", self.chip, *where, "--do-not-confirm", *cmd)

    def describe(self):
        return f"virtual eFuses in {self.virt}" if self.virt else (
            f"the chip on {self.port}" if self.port else "the first chip esptool finds")


@dataclass
class Step:
    title: str
    argv: list
    final: bool = False  # the download-mode restriction: after it espefuse cannot read back


def _target(chip, port=None, virt=None):
    if chip not in CHIPS:
        raise UsageError(f"chip must be one of {', '.join(CHIPS)}")
    if port and virt:
        raise UsageError("give either --port or --virt, not both")
    return Target(chip, port, str(virt) if virt else None)


def burn_steps(chip, keys, target):
    """The irreversible steps, in ESP-IDF's order: flash encryption first (its key must be
    read-protected before RD_DIS is write-protected), then Secure Boot v2, then the ROM
    download restriction last."""
    board = load_board(chip)
    sb, fe, ef = board["secure_boot"], board["flash_encryption"], target.espefuse
    if chip == "esp32":
        return [
            Step("Burn the flash-encryption key into BLOCK1 (read- and write-protected)",
                 ef("burn-key", "flash_encryption", keys["fe_key"])),
            Step("Enable flash encryption, release mode: FLASH_CRYPT_CNT=127, "
                 "FLASH_CRYPT_CONFIG=0xF",
                 ef("burn-efuse", "FLASH_CRYPT_CNT", "127", "FLASH_CRYPT_CONFIG", "0xF")),
            Step("Disable ROM-download encrypt/decrypt/cache, JTAG and the ROM console",
                 ef("burn-efuse", "DISABLE_DL_ENCRYPT", "1", "DISABLE_DL_DECRYPT", "1",
                    "DISABLE_DL_CACHE", "1", "JTAG_DISABLE", "1", "CONSOLE_DEBUG_DISABLE", "1")),
            Step("Write-protect those security eFuses (DIS_CACHE write-protect group)",
                 ef("write-protect-efuse", "DIS_CACHE")),
            Step("Burn the Secure Boot v2 key digest into BLOCK2 (write-protected, readable)",
                 ef("burn-key", "secure_boot_v2", keys["digest"])),
            Step("Enable Secure Boot v2 (ABS_DONE_1)", ef("burn-efuse", "ABS_DONE_1", "1")),
            Step("Write-protect RD_DIS: the digest can never be read-protected",
                 ef("write-protect-efuse", "RD_DIS")),
            Step("Disable UART ROM download mode (after this no tool reaches the ROM)",
                 ef("burn-efuse", "UART_DOWNLOAD_DIS", "1"), final=True),
        ]
    slot = int(sb["digest_purpose"][-1])
    revoke = [a for n in range(3) if n != slot for a in (f"SECURE_BOOT_KEY_REVOKE{n}", "1")]
    dcache = ["DIS_DOWNLOAD_DCACHE", "1"] if chip == "esp32s3" else []
    return [
        Step(f"Burn the flash-encryption key into {fe['key_block']} as {fe['key_purpose']} "
             "(read- and write-protected)",
             ef("burn-key", fe["key_block"], keys["fe_key"], fe["key_purpose"])),
        Step("Enable flash encryption, release mode: SPI_BOOT_CRYPT_CNT=7",
             ef("burn-efuse", "SPI_BOOT_CRYPT_CNT", "7")),
        Step("Disable ROM-download cache and manual encryption, JTAG (pad, USB, soft) "
             "and direct boot",
             ef("burn-efuse", "DIS_DOWNLOAD_ICACHE", "1", *dcache,
                "DIS_DOWNLOAD_MANUAL_ENCRYPT", "1", "DIS_PAD_JTAG", "1", "DIS_USB_JTAG", "1",
                "SOFT_DIS_JTAG", "7", "DIS_DIRECT_BOOT", "1")),
        Step("Write-protect those security eFuses (DIS_ICACHE write-protect group)",
             ef("write-protect-efuse", "DIS_ICACHE")),
        Step(f"Burn the Secure Boot v2 key digest into {sb['digest_block']} as "
             f"{sb['digest_purpose']} (write-protected, readable)",
             ef("burn-key", sb["digest_block"], keys["digest"], sb["digest_purpose"])),
        Step("Enable Secure Boot v2 and revoke the unused digest slots",
             ef("burn-efuse", "SECURE_BOOT_EN", "1", *revoke)),
        Step("Write-protect RD_DIS: the digest can never be read-protected",
             ef("write-protect-efuse", "RD_DIS")),
        Step("Switch ROM download to Secure Download Mode (after this espefuse cannot burn)",
             ef("burn-efuse", "ENABLE_SECURITY_DOWNLOAD", "1"), final=True),
    ]


def plan_secure_boot(chip, keys_dir, port=None, virt=None):
    """What `apply` would do, as data; runs nothing and writes nothing. `prepare` holds
    the espsecure commands run first; `missing` the keys a real chip needs beforehand."""
    target = _target(chip, port, virt)
    board = load_board(chip)
    keys = key_paths(keys_dir)
    prepare, missing = [], []
    makers = {
        "signing_key": tool_argv("espsecure", "generate-signing-key", "--version", "2",
                                 "--scheme", board["secure_boot"]["scheme"], keys["signing_key"]),
        "fe_key": tool_argv("espsecure", "generate-flash-encryption-key", "--keylen",
                            board["flash_encryption"]["key_bits"], keys["fe_key"]),
    }
    for name, argv in makers.items():
        if not Path(keys[name]).is_file():
            (prepare.append(argv) if target.virt else missing.append(keys[name]))
    prepare.append(tool_argv("espsecure", "extract-public-key", "--version", "2",
                             "--keyfile", keys["signing_key"], keys["public_key"]))
    prepare.append(tool_argv("espsecure", "digest-sbv2-public-key", "--keyfile",
                             keys["signing_key"], "--output", keys["digest"]))
    return {"chip": chip, "target": target, "scheme": board["secure_boot"]["scheme"],
            "keys": keys, "missing": missing, "prepare": prepare,
            "steps": burn_steps(chip, keys, target)}


def read_efuses(target, timeout=None):
    """espefuse summary as a dict {name: {value, raw_value, readable, writeable, ...}}.
    A read still running after `timeout` s is stopped (Unreachable)."""
    with tempfile.TemporaryDirectory(prefix="iotctl-efuse-") as tmp:
        out = Path(tmp) / "summary.json"
        run_tool(target.espefuse("summary", "--format", "json", "--file", out), timeout=timeout)
        return json.loads(out.read_text())


def _raw(efuses, name):
    return int(efuses[name]["raw_value"], 16)


def _block_bytes(efuses, name):
    """A key block's bytes, or None when it is read-protected."""
    entry = efuses[name]
    return bytes.fromhex(entry["value"]) if entry["readable"] else None


def _purpose_block(efuses, purpose):
    for n in range(6):
        if efuses.get(f"KEY_PURPOSE_{n}", {}).get("value") == purpose:
            return f"BLOCK_KEY{n}"
    return None


def security_state(chip, efuses, board=None):
    """The security-relevant eFuse state in one flat dict (same keys for every chip)."""
    board = board or load_board(chip)
    if chip == "esp32":
        digest = _block_bytes(efuses, "BLOCK2")
        return {
            "chip_revision": efuses["WAFER_VERSION_MAJOR"]["value"],
            "secure_boot": bool(efuses["ABS_DONE_1"]["value"]),
            "secure_boot_v1": bool(efuses["ABS_DONE_0"]["value"]),
            "digest": digest.hex() if digest and any(digest) else None,
            "flash_crypt_cnt": _raw(efuses, "FLASH_CRYPT_CNT"),
            "flash_encryption": bin(_raw(efuses, "FLASH_CRYPT_CNT")).count("1") % 2 == 1,
            "fe_key_protected": not efuses["BLOCK1"]["readable"],
            "jtag_disabled": bool(efuses["JTAG_DISABLE"]["value"]),
            "download_restricted": bool(efuses["UART_DOWNLOAD_DIS"]["value"]),
            "rd_dis_locked": not efuses["RD_DIS"]["writeable"],
        }
    block = _purpose_block(efuses, board["secure_boot"]["digest_purpose"])
    digest = _block_bytes(efuses, block) if block else None
    fe_block = _purpose_block(efuses, board["flash_encryption"]["key_purpose"])
    cnt = _raw(efuses, "SPI_BOOT_CRYPT_CNT")
    return {
        "chip_revision": efuses["WAFER_VERSION_MAJOR"]["value"],
        "secure_boot": bool(efuses["SECURE_BOOT_EN"]["value"]),
        "secure_boot_v1": False,
        "digest": digest.hex() if digest else None,
        "digest_block": block,
        "flash_crypt_cnt": cnt,
        "flash_encryption": bin(cnt).count("1") % 2 == 1,
        "fe_key_protected": bool(fe_block) and not efuses[fe_block]["readable"],
        "jtag_disabled": all(bool(efuses[n]["value"]) for n in ("DIS_PAD_JTAG", "DIS_USB_JTAG")),
        "download_restricted": bool(efuses["ENABLE_SECURITY_DOWNLOAD"]["value"]
                                    or efuses["DIS_DOWNLOAD_MODE"]["value"]),
        "rd_dis_locked": not efuses["RD_DIS"]["writeable"],
    }


def _blank_problems(chip, board, efuses):
    """Why this chip cannot take the production burn (empty list: it can)."""
    state = security_state(chip, efuses, board)
    problems = []
    if chip == "esp32" and _raw(efuses, "CODING_SCHEME") != 0:
        problems.append("the eFuse coding scheme is 3/4; this plan needs 256-bit key blocks")
    if state["secure_boot"] or state["secure_boot_v1"]:
        problems.append("secure boot is already enabled")
    if state["flash_crypt_cnt"]:
        problems.append(f"the flash-crypt counter is already {state['flash_crypt_cnt']:#x}")
    if state["download_restricted"]:
        problems.append("ROM download mode is already restricted")
    if state["rd_dis_locked"]:
        problems.append("RD_DIS is already write-protected")
    blocks = [board["secure_boot"]["digest_block"], board["flash_encryption"]["key_block"]]
    for name in blocks:
        entry = efuses[name]
        if not entry["readable"] or not entry["writeable"] or any(bytes.fromhex(entry["value"])):
            problems.append(f"key block {name} is already burnt or protected")
        if chip != "esp32":
            purpose = efuses[f"KEY_PURPOSE_{name[-1]}"]["value"]
            if purpose != "USER":
                problems.append(f"KEY_PURPOSE_{name[-1]} is already {purpose}")
    minimum = board["secure_boot"].get("min_chip_revision")
    if minimum is not None and state["chip_revision"] < minimum:
        problems.append(f"chip revision v{state['chip_revision']} has no Secure Boot v2 "
                        f"(needs v{minimum}.0 or later)")
    return problems


def _check_burnt(chip, board, efuses, digest, final):
    """Raise DeviceError unless the eFuses now hold what the plan burnt."""
    state = security_state(chip, efuses, board)
    wrong = []
    if not state["secure_boot"]:
        wrong.append("secure boot is not enabled")
    if state["digest"] != digest.hex():
        wrong.append("the key digest in eFuse does not match the signing key")
    block = board["secure_boot"]["digest_block"]
    if efuses[block]["writeable"]:
        wrong.append(f"{block} is not write-protected")
    if not state["flash_encryption"] or not state["fe_key_protected"]:
        wrong.append("flash encryption is not enabled with a read-protected key")
    if not state["jtag_disabled"]:
        wrong.append("JTAG is not disabled")
    if not state["rd_dis_locked"]:
        wrong.append("RD_DIS is not write-protected")
    if final and not state["download_restricted"]:
        wrong.append("ROM download mode is not restricted")
    if wrong:
        raise DeviceError("after burning: " + "; ".join(wrong))
    return state


def apply_secure_boot(chip, keys_dir, port=None, virt=None, confirm=None, report=None,
                      keep_fe_key=False, timeout=None):
    """Burn the production eFuses. Reads the chip first and refuses one that is not blank
    (so applying twice burns nothing). `confirm(plan)` must return True before anything
    is created or burnt (None: already confirmed, e.g. --yes). Returns the final state.
    `timeout` bounds each read of the eFuses; a burn is never interrupted (a half-burnt
    chip is worse than a slow one), espefuse's own connection attempts bound it."""
    plan = plan_secure_boot(chip, keys_dir, port, virt)
    target, board = plan["target"], load_board(chip)
    problems = _blank_problems(chip, board, read_efuses(target, timeout))
    if problems:
        raise DeviceError(f"refusing to burn {chip} eFuses on {target.describe()}: "
                          + "; ".join(problems) + ". Nothing was burnt.")
    if plan["missing"]:
        raise KeyFileError(
            f"{', '.join(plan['missing'])} not found. On a real chip the keys must be the ones "
            "the flashed images were signed and encrypted with: create them with `iotctl "
            "secure-boot keys`, sign the images, flash with --encrypt-key, then apply")
    if confirm is not None and not confirm(plan):
        raise UsageError("not confirmed; nothing was burnt")
    # On a real chip, new keys would not match the signed and encrypted flash contents.
    keys = prepare_keys(chip, keys_dir, generate=bool(target.virt))
    digest = Path(keys["digest"]).read_bytes()
    steps = plan["steps"]
    for i, step in enumerate(steps, 1):
        if step.final:  # last chance to read back: espefuse cannot after this step
            _check_burnt(chip, board, read_efuses(target, timeout), digest, final=False)
        if report:
            report(i, len(steps), step)
        run_tool(step.argv)
    state = None
    if target.virt:
        state = _check_burnt(chip, board, read_efuses(target, timeout), digest, final=True)
    if not keep_fe_key:
        os.remove(keys["fe_key"])  # the chip holds it now; no host copy should remain
    return {"chip": chip, "target": target.describe(), "steps": len(steps),
            "digest": digest.hex(), "fe_key_deleted": not keep_fe_key, "state": state}
