"""Record the modules.dep and modules.builtin extracts kept here, from kernel module trees.

    python3 tests/data/modules/record.py ID=LIB_MODULES_RELEASE_DIR ...

Each tree needs a modules.dep (depmod -b ROOT RELEASE makes one; Debian's packages ship none). The
extract keeps the closure of what the initramfs loads, plus overlay, and the matching built-ins.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from compat.images.initramfs import WANTED, ModuleTable, module_name

HERE = Path(__file__).parent


def record(kernel_id: str, tree: Path) -> None:
    dep = (tree / "modules.dep").read_text()
    builtin = (tree / "modules.builtin").read_text()
    keep = set(ModuleTable.parse(dep, builtin).load_order((*WANTED, "overlay")))
    lines = [line for line in dep.splitlines() if module_name(line.partition(":")[0]) in keep]
    built = [
        line
        for line in builtin.splitlines()
        if any(word in line for word in ("virtio", "overlay", "hw_random"))
    ]
    (HERE / f"debian-{kernel_id}.modules.dep").write_text("\n".join(lines) + "\n")
    (HERE / f"debian-{kernel_id}.modules.builtin").write_text("\n".join(built) + "\n")
    print(f"{kernel_id}: {len(lines)} modules.dep lines, {len(built)} built-in lines")


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        kernel_id, _, path = argument.partition("=")
        record(kernel_id, Path(path))
