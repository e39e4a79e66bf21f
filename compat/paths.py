"""Where the checkout is: the repository root, and the files of it that the harness reads.

compat runs from a checkout (the VM images, the Vagrantfile and the runtime it copies into guests are
files of the repository, not package data), so the root is found from this file, here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VM_IMAGES = REPO / "vm-images"
