"""`runtime run`'s command line, parsed without argparse: importing argparse costs about 7 ms on a
start path that aims at runc's 30 ms. One table drives both the parser and the help."""

from __future__ import annotations

import os
import sys

from runtime import output, spec
from runtime.cgroups.base import Limits
from runtime.errors import Failure
from runtime.storage.store import Store, top_file

USAGE = "usage: runtime run [OPTIONS] (IMAGE | --rootfs DIR) [--] [COMMAND [ARG...]]"
DESCRIPTION = (
    "Run COMMAND in new namespaces and cgroups, adapted to what this host's kernel offers.\n"
    "Exit code: the command's; 128+N if killed by signal N; 125 if the runtime failed;\n"
    "126 if the command cannot be executed; 127 if it is not found."
)
# long name, short name, value name (None for a flag), help
OPTIONS: tuple[tuple[str, str, str | None, str], ...] = (
    ("--rootfs", "", "DIR", "run from this directory rather than an image"),
    (
        "--storage",
        "",
        "auto|overlay|copy",
        "an image's root: overlayfs over its layers, or a copy (auto: overlay where it mounts)",
    ),
    ("--memory", "-m", "SIZE", "memory limit, e.g. 64m; no swap on top"),
    ("--cpus", "", "N", "CPU limit in CPUs, e.g. 0.5"),
    ("--pids-limit", "", "N", "most processes at once"),
    ("--cpuset-cpus", "", "LIST", "the CPUs the container may run on, e.g. 1, 0-1 or 0,2-3"),
    ("--hostname", "", "NAME", "host name (default: the container id)"),
    ("--env", "-e", "KEY=VAL", "set an environment variable (repeatable)"),
    ("--workdir", "-w", "DIR", "working directory in the container (default /)"),
    ("--user", "-u", "UID[:GID]", "user, as ids or names from the container's /etc/passwd (default 0:0)"),
    ("--network", "", "none|host", "none: a new network namespace with lo up (default); host: the host's"),
    (
        "--userns",
        "",
        "auto|host|private",
        "private: container root is an unprivileged host uid; auto (default): private where user namespaces work",
    ),
    ("--name", "", "NAME", "a name for `runtime ps` (default: the container id)"),
    ("--read-only", "", None, "mount the root filesystem read-only"),
    (
        "--security-opt",
        "",
        "seccomp=unconfined|PROFILE.json",
        "the seccomp filter: Docker's default profile unless unconfined or a profile in Docker's JSON format",
    ),
    ("--preserve-fds", "", "N", "pass fds 3 to 3+N-1 into the container (no directories); others are closed"),
    ("--verbose", "-v", None, "say what was decided and why"),
    ("--help", "-h", None, "show this help"),
)
_BY_NAME = {name: option for option in OPTIONS for name in option[:2] if name}


def help_text() -> str:
    lines = [USAGE, "", DESCRIPTION, "", "options:"]
    for long, short, value, text in OPTIONS:
        names = f"{short}, {long}" if short else long
        lines.append(f"  {names + (' ' + value if value else ''):<34} {text}")
    return "\n".join(lines)


def parse(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Options (long name -> values; flags get [""]) and the command. Options end at the first
    word that is not one, or at "--"."""
    values: dict[str, list[str]] = {}
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        word = argv[index]
        index += 1
        if word == "--":
            break
        name, has_inline, inline = word.partition("=") if word.startswith("--") else (word, False, "")
        option = _BY_NAME.get(name)
        if option is None:
            raise spec.bad(f"unknown option {name}", "runtime run --help lists them")
        if option[2] is None:
            values[option[0]] = [""]
            continue
        if not has_inline:
            if index >= len(argv):
                raise spec.bad(f"{name} needs a value ({option[2]})")
            inline = argv[index]
            index += 1
        values.setdefault(option[0], []).append(inline)
    return values, argv[index:]


def main(argv: list[str]) -> int:
    try:
        options, command = parse(argv)
        if "--help" in options:
            print(help_text())
            return 0
        output.verbose = output.verbose or "--verbose" in options
        from runtime import container

        return container.run(build_spec(options, command))
    except Failure as failure:
        sys.stderr.write(f"runtime: error: {failure}\n")
        return failure.code


def build_spec(options: dict[str, list[str]], command: list[str]) -> spec.ContainerSpec:
    def last(name: str) -> str | None:
        return options[name][-1] if name in options else None

    container_id = os.urandom(6).hex()
    rootfs_arg = last("--rootfs")
    image = None
    env: list[tuple[str, str]]
    if rootfs_arg is None:
        if not command:
            raise spec.bad("no image to run", USAGE)
        storage = spec.check_choice("--storage", last("--storage") or "auto", spec.STORAGE_MODES)
        image, command = _image(command[0], storage), command[1:]
        record = image.record
        command = (record.entrypoint or []) + (command or record.cmd or [])
        if not command:
            raise spec.bad(
                f"the image has no Entrypoint or Cmd: give a command after {record.refs[:1] or 'the image'}"
            )
        env = [(key, value) for key, _, value in (item.partition("=") for item in record.env)]
        rootfs = ""  # chosen with the storage, in container.run
        workdir = last("--workdir") or record.workdir or "/"
        user = last("--user") or record.user or "0:0"
        passwd, group = (top_file(image.store, record, f"etc/{name}") for name in ("passwd", "group"))
    else:
        if not command:
            raise spec.bad("no command to run", USAGE)
        rootfs = spec.check_rootfs(rootfs_arg)
        env, workdir, user = [], last("--workdir") or "/", last("--user") or "0:0"
        passwd, group = os.path.join(rootfs, "etc/passwd"), os.path.join(rootfs, "etc/group")
    memory, cpus, pids = last("--memory"), last("--cpus"), last("--pids-limit")
    cpuset_cpus = last("--cpuset-cpus")
    name, hostname = last("--name"), last("--hostname")
    return spec.ContainerSpec(
        container_id=container_id,
        name=spec.check_name(name) if name else container_id,
        rootfs=rootfs,
        argv=tuple(command),
        env=tuple(env) + spec.parse_env(options.get("--env", [])),
        workdir=workdir if workdir.startswith("/") else f"/{workdir}",
        user=spec.parse_user(user, passwd, group),
        hostname=spec.check_hostname(hostname) if hostname else container_id,
        limits=Limits(
            memory=spec.parse_memory(memory) if memory else None,
            cpus=spec.parse_cpus(cpus) if cpus else None,
            pids=spec.parse_pids(pids) if pids else None,
            cpuset_cpus=spec.parse_cpuset_cpus(cpuset_cpus) if cpuset_cpus is not None else None,
        ),
        network=spec.check_choice("--network", last("--network") or "none", spec.NETWORKS),
        userns=spec.check_choice("--userns", last("--userns") or "auto", spec.USERNS_MODES),
        read_only="--read-only" in options,
        image=image,
        preserve_fds=spec.parse_preserve_fds(last("--preserve-fds") or "0"),
        seccomp=spec.parse_security_opt(options.get("--security-opt", [])),
    )


def _image(name: str, storage: str) -> spec.ImageUse:
    store = Store()
    image_id = store.resolve(name) if os.path.isdir(store.sub("images")) else None
    if image_id is None:
        hint = (
            "runtime image import FILE adds one; runtime image ls lists them; --rootfs DIR runs a directory"
        )
        raise spec.bad(f"no image {name!r} in {store.path}", hint)
    try:
        record = store.record(image_id)
    except Failure as damaged:
        raise spec.bad(damaged.message, damaged.hint) from None
    return spec.ImageUse(store, record, storage)
