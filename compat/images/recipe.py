"""The guest rootfs recipe, vm-images/rootfs.json: loaded, every field checked, and the files it renders.

A Recipe names what debootstrap is asked for (suite, variant, arch, packages) and how the guest is
configured (hostname, ext4 label, sshd settings, users). A field of the wrong type or an unusable
value is a RecipeError naming the field, with the fix as its hint. rendered_files() are the guest's
files that come from the recipe; they are part of the image's cache key (rootfs.image_key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from compat.errors import CompatError
from compat.images.apt import PACKAGE_NAME
from compat.paths import VM_IMAGES

RECIPE = VM_IMAGES / "rootfs.json"
HOST_KEY = "etc/ssh/ssh_host_ed25519_key"

_RECIPE_FIELDS = frozenset(
    {"comment", "suite", "variant", "arch", "packages", "hostname", "label", "sshd", "users"}
)
_USER_FIELDS = frozenset({"name", "uid", "shell", "authorized_keys"})
_NAME = re.compile(r"[a-z_][a-z0-9_-]*")
_WORD = re.compile(r"[A-Za-z0-9._-]+")
_SSHD_KEYWORD = re.compile(r"[A-Za-z]+")
_EXT4_LABEL_MAX = 16
T = TypeVar("T")


class RootfsError(CompatError):
    """The root filesystem could not be built."""


class RecipeError(RootfsError):
    """vm-images/rootfs.json is not what this module expects."""

    def __init__(self, message: str, hint: str = "fix the recipe, vm-images/rootfs.json") -> None:
        super().__init__(message, hint)


# --- the recipe ------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """A login in the guest, with the public keys that may log in as it."""

    name: str
    uid: int
    shell: str
    authorized_keys: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    suite: str
    variant: str
    arch: str
    packages: tuple[str, ...]
    hostname: str
    label: str
    sshd: tuple[tuple[str, str], ...]
    users: tuple[User, ...]

    @property
    def include(self) -> tuple[str, ...]:
        """The packages in a stable order, each once."""
        return tuple(sorted(set(self.packages)))

    def tree_inputs(self) -> dict[str, object]:
        """What debootstrap is asked for, and nothing else."""
        return {"suite": self.suite, "variant": self.variant, "arch": self.arch, "packages": self.include}

    def config_inputs(self) -> dict[str, object]:
        return {
            "hostname": self.hostname,
            "label": self.label,
            "sshd": self.sshd,
            "users": [asdict(user) for user in self.users],
        }


def _field(data: Mapping[str, Any], name: str, kind: type[T], pattern: re.Pattern[str] | None = None) -> T:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RecipeError(f"recipe field {name!r} must be a {kind.__name__}, not {value!r}")
    if pattern is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
        raise RecipeError(f"recipe field {name!r} has an unusable value {value!r}")
    return value


def _strings(data: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
    values = _field(data, name, list)
    for value in values:
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            raise RecipeError(f"recipe field {name!r} has an unusable entry {value!r}")
    return tuple(values)


def _user(data: Mapping[str, Any]) -> User:
    unknown = set(data) - _USER_FIELDS
    if unknown:
        raise RecipeError(f"unknown fields in a recipe user: {sorted(unknown)}")
    keys = _strings(data, "authorized_keys")
    if any("\n" in k for k in keys):
        raise RecipeError("an authorized key must be one line")
    uid = _field(data, "uid", int)
    if not 1 <= uid < 60000:
        raise RecipeError(f"recipe user uid {uid} is outside 1..59999")
    return User(_field(data, "name", str, _NAME), uid, _field(data, "shell", str), keys)


def _sshd_settings(data: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    settings = _field(data, "sshd", dict)
    for name, value in settings.items():
        if not _SSHD_KEYWORD.fullmatch(name) or not isinstance(value, str) or "\n" in value:
            raise RecipeError(f"unusable sshd setting {name!r}: {value!r}")
    return tuple(settings.items())


def parse_recipe(data: Mapping[str, Any]) -> Recipe:
    unknown = set(data) - _RECIPE_FIELDS
    if unknown:
        raise RecipeError(f"unknown recipe fields: {sorted(unknown)}")
    label = _field(data, "label", str, _WORD)
    if len(label) > _EXT4_LABEL_MAX:
        raise RecipeError(f"the ext4 label {label!r} is longer than {_EXT4_LABEL_MAX} characters")
    return Recipe(
        suite=_field(data, "suite", str, _WORD),
        variant=_field(data, "variant", str, _WORD),
        arch=_field(data, "arch", str, _WORD),
        packages=_strings(data, "packages", PACKAGE_NAME),
        hostname=_field(data, "hostname", str, _NAME),
        label=label,
        sshd=_sshd_settings(data),
        users=tuple(_user(u) for u in _field(data, "users", list)),
    )


def load_recipe(path: Path = RECIPE) -> Recipe:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RecipeError(f"cannot read the rootfs recipe {path}: {exc}", f"fix {path}") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"the rootfs recipe {path} is not a JSON object", f"fix {path}")
    try:
        return parse_recipe(data)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc.message}", f"fix {path}") from exc


def render_sshd_config(settings: Mapping[str, str]) -> str:
    """/etc/ssh/sshd_config. sshd keeps the first value it reads for a keyword, so the recipe's
    settings come first and win over the drop-ins and Debian's defaults that follow."""
    for name, value in settings.items():
        if not _SSHD_KEYWORD.fullmatch(name) or "\n" in value:
            raise RecipeError(f"unusable sshd setting {name!r}: {value!r}")
    lines = [
        "# Written by compat/images/rootfs.py from vm-images/rootfs.json.",
        *(f"{name} {value}" for name, value in settings.items()),
        f"HostKey /{HOST_KEY}",
        "Include /etc/ssh/sshd_config.d/*.conf",
        "KbdInteractiveAuthentication no",
        "UsePAM yes",
        "X11Forwarding no",
        "PrintMotd no",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
    ]
    return "\n".join(lines) + "\n"


SSHD_FAST_DROPIN = """\
# Written by compat/images/rootfs.py. The guest has no resolver and no Kerberos: never wait for them.
UseDNS no
GSSAPIAuthentication no
PrintLastLog no
"""


def rendered_files(recipe: Recipe) -> dict[str, str]:
    """The guest's files that come from the recipe, by path in the tree."""
    name = recipe.hostname
    return {
        "etc/ssh/sshd_config": render_sshd_config(dict(recipe.sshd)),
        "etc/ssh/sshd_config.d/10-kcompat-fast.conf": SSHD_FAST_DROPIN,
        "etc/hostname": f"{name}\n",
        "etc/hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "etc/fstab": f"# <file system> <mount point> <type> <options> <dump> <pass>\nLABEL={recipe.label} / ext4 defaults 0 0\n",
        # No resolver in the guest: an empty file makes every lookup fail at once on loopback.
        "etc/resolv.conf": "",
        # Empty: nothing in the image names one machine (the guest has no systemd to fill it in).
        "etc/machine-id": "",
    }
