"""ESP32 tooling: boards and partition tables (boards, partitions), flashing with esptool
(flashing), Secure Boot v2 keys and image signatures with espsecure (secureboot), the eFuse
plan and burn with espefuse (efuse), how the three tools are run (tools), and the MicroPython
image wrapped in a signed update bundle (micropython_image). The names below are the
package's API, used by the CLI, the tests and tools/hwtest.py."""

from .boards import BOARDS_DIR, CHIPS, load_board, parse_size, size_name
from .efuse import (
                    Step,
                    Target,
                    apply_secure_boot,
                    burn_steps,
                    plan_secure_boot,
                    read_efuses,
                    security_state,
)
from .flashing import AFTER, BEFORE, DEFAULT_BAUD, FlashJob, Image, check_images, flash, plan_flash
from .partitions import parse_partition_table_bin, partition_table_bin
from .secureboot import (
                    KEY_FILES,
                    generate_flash_encryption_key,
                    generate_signing_key,
                    key_digest,
                    key_paths,
                    prepare_keys,
                    sign_image,
                    verify_image,
)
from .tools import format_argv, run_tool, tool_argv

__all__ = ["AFTER", "BEFORE", "BOARDS_DIR", "CHIPS", "DEFAULT_BAUD", "KEY_FILES", "FlashJob",
           "Image", "Step", "Target", "apply_secure_boot", "burn_steps", "check_images",
           "flash", "format_argv", "generate_flash_encryption_key", "generate_signing_key",
           "key_digest", "key_paths", "load_board", "parse_partition_table_bin", "parse_size",
           "partition_table_bin", "plan_flash", "plan_secure_boot", "prepare_keys",
           "read_efuses", "run_tool", "security_state", "sign_image", "size_name", "tool_argv",
           "verify_image"]
