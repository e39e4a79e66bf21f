"""Record the modules.dep and modules.builtin extracts kept here, from kernel module trees.

    python3 tests/data/modules/record.py ID=LIB_MODULES_RELEASE_DIR ...

Each tree needs a modules.dep (depmod -b ROOT RELEASE makes one; Debian's packages ship none). The
extract keeps the closure of what the initramfs loads (soft dependencies too), plus overlay, the
matching built-ins, and the softdep and alias lines of those modules (written only where there are any).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from compat.images.initramfs import WANTED, ModuleTable, _normal, module_name

HERE = Path(__file__).parent


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _write(path: Path, lines: list[str]) -> None:
    if lines or path.suffix in (".dep", ".builtin"):
        path.write_text("\n".join(lines) + "\n")


def record(kernel_id: str, tree: Path) -> None:
    dep = (tree / "modules.dep").read_text()
    builtin = (tree / "modules.builtin").read_text()
    softdep, alias = _text(tree / "modules.softdep"), _text(tree / "modules.alias")
    table = ModuleTable.parse(dep, builtin, softdep, alias)
    keep = set(table.load_order((*WANTED, "overlay")))
    lines = [line for line in dep.splitlines() if module_name(line.partition(":")[0]) in keep]
    words = ("virtio", "overlay", "hw_random", "ext4", "jbd2", "mbcache", "crc16", "crc32c")
    built = [line for line in builtin.splitlines() if any(word in line for word in words)]
    soft = [
        line for line in softdep.splitlines() if line.split()[1:2] and module_name(line.split()[1]) in keep
    ]
    targets = {_normal(word) for line in soft for word in line.split()[2:]}
    aliases = [
        line for line in alias.splitlines() if line.split()[1:2] and _normal(line.split()[1]) in targets
    ]
    _write(HERE / f"debian-{kernel_id}.modules.dep", lines)
    _write(HERE / f"debian-{kernel_id}.modules.builtin", built)
    _write(HERE / f"debian-{kernel_id}.modules.softdep", soft)
    _write(HERE / f"debian-{kernel_id}.modules.alias", aliases)
    print(
        f"{kernel_id}: {len(lines)} modules.dep, {len(built)} built-in, {len(soft)} softdep, {len(aliases)} alias lines"
    )


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        kernel_id, _, path = argument.partition("=")
        record(kernel_id, Path(path))
