"""The `runtime` command. Imports stay inside the verbs: start-up time matters."""

from __future__ import annotations

import os
import sys

from runtime.errors import Failure, die

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence


DISTRIBUTION = "kcompat"  # the package that installs the `runtime` command (pyproject.toml)
DESCRIPTION = (
    "A container runtime that finds out what its host's kernel can do (namespaces, cgroup v1 or v2, "
    "overlayfs, pivot_root, user namespaces) and adapts to it. `runtime check` says whether this host can "
    "run containers, and why not; `runtime run` runs a command in a container, from an imported image or a "
    "root filesystem directory; `runtime image` imports Docker and OCI images into the local store."
)
EPILOG = "Each verb has its own help: runtime VERB --help."


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(prog="runtime", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("-v", "--verbose", action="store_true", help="say what was decided and why")
    parser.add_argument("--version", action=_version_action(), help="print the version and exit")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _add_check(verbs)
    _add_run(verbs)
    _add_image(verbs)
    verbs.add_parser("ps", help="list running containers").set_defaults(func=cmd_ps)
    verbs.add_parser("gc", help="remove what runtimes killed with SIGKILL left behind").set_defaults(
        func=cmd_gc
    )
    return parser


def version() -> str:
    """The installed package's version; read here only, on the argparse path (importlib.metadata costs
    start-up time `runtime run` does not pay)."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # runtime/ copied in uninstalled, as into the compat guests
        return "(unknown: not installed)"


def _version_action() -> type[argparse.Action]:
    """argparse's "version" action, but the version is looked up only when --version is given."""
    import argparse

    class ShowVersion(argparse.Action):
        def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
            super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,  # noqa: ARG002 - argparse.Action.__call__'s signature
            values: str | Sequence[object] | None,  # noqa: ARG002 - as above
            option_string: str | None = None,  # noqa: ARG002 - as above
        ) -> None:
            print(f"runtime {version()}")
            parser.exit()

    return ShowVersion


def _add_check(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pathlib import Path

    check = verbs.add_parser(
        "check",
        help="what this kernel can do for containers",
        description="Detect the kernel features of this host (or of a kernel config file) and say whether "
        "containers can run. Exit 0 when they can for the calling user, 1 when they cannot, 2 when there is "
        "nothing to judge by (an unreadable config, no /proc).",
    )
    check.add_argument("--json", action="store_true", help="print the versioned JSON document instead")
    check.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="judge a kernel that is not running: a /boot/config-* file, a gzipped config, or a kernel .deb",
    )
    check.set_defaults(func=cmd_check)


def _add_run(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Only for `runtime --help`: main() hands `run` to runcli before argparse is imported.
    verbs.add_parser("run", help="run a command in a container (runtime run --help)", add_help=False)


def _add_image(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    image = verbs.add_parser("image", help="import, list, inspect and remove images")
    actions = image.add_subparsers(dest="action", required=True, metavar="ACTION")
    load = actions.add_parser(
        "import",
        help="import a docker-save tarball or an OCI image layout (directory or tar)",
        description="Every digest is checked and every layer unpacked safely; a failed import leaves nothing. "
        "The store is /var/lib/runtime, or $RUNTIME_STORE. An import stops before the store's file system "
        "is down to its last 5%% (or 1 GiB, whichever is smaller).",
    )
    load.add_argument("source", metavar="FILE|DIR")
    load.add_argument(
        "--name",
        metavar="NAME[:TAG]",
        help="the name to give it, in Docker's grammar (default: the names it carries)",
    )
    load.add_argument(
        "--max-size",
        metavar="SIZE",
        help="refuse an image whose new layers unpack to more than SIZE bytes (10m, 2g; default: no limit "
        "but the free-space reserve)",
    )
    load.set_defaults(func=cmd_image_import)
    actions.add_parser("ls", help="list images").set_defaults(func=cmd_image_ls)
    inspect = actions.add_parser("inspect", help="an image's layers and config, as JSON")
    inspect.add_argument("name", metavar="NAME")
    inspect.set_defaults(func=cmd_image_inspect)
    remove = actions.add_parser("rm", help="untag an image; its last name removes it and its unshared layers")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=cmd_image_rm)


def cmd_image_import(args: argparse.Namespace) -> int:
    from runtime.storage.importer import import_image
    from runtime.storage.space import parse_size
    from runtime.storage.store import Store

    try:
        max_size = parse_size(args.max_size) if args.max_size is not None else None
    except ValueError:
        die(
            f"--max-size {args.max_size!r} is not a size", "give bytes, or a number with k, m, g or t: 10m", 1
        )
    if os.geteuid() != 0:
        die(
            "image import needs root: layers keep their owners, and whiteouts are device nodes",
            "run it as root",
        )

    def progress(text: str) -> None:
        print(f"  {text}", file=sys.stderr)

    done = import_image(Store(), args.source, args.name, progress, max_size)
    names = ", ".join(done.record.refs) or "(no name)"
    size = done.record.size / 1024**2
    print(
        f"imported {names} sha256:{done.record.image_id[:12]}: {len(done.record.layers)} layers "
        f"({done.new_layers} new), {size:.1f} MiB, in {done.seconds:.2f} s"
    )
    return 0


def cmd_image_ls(_args: argparse.Namespace) -> int:
    from runtime.storage import images
    from runtime.storage.store import Store

    print(f"{'NAME':<40} {'ID':<12} {'LAYERS':>6} {'SIZE':>10}")
    for name, image_id, layers, size in images.listing(Store()):
        print(f"{name:<40} {image_id[:12]:<12} {layers:>6} {size / 1024**2:>8.1f}MB")
    return 0


def cmd_image_inspect(args: argparse.Namespace) -> int:
    import json

    from runtime.storage import images
    from runtime.storage.store import Store

    print(json.dumps(images.inspect(Store(), args.name), indent=2))
    return 0


def cmd_image_rm(args: argparse.Namespace) -> int:
    from runtime.storage import images
    from runtime.storage.store import Store

    print(images.remove(Store(), args.name))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from runtime.features import report

    if args.config is not None:
        from runtime.features import fromconfig, kconfig

        try:
            features = fromconfig.features(kconfig.load(args.config))
        except kconfig.ConfigError as exc:
            die(str(exc), exc.hint)
    else:
        from runtime.features.host import detect

        features = detect()
    checks = report.build_checks(features)
    if args.json:
        import json

        print(json.dumps(report.to_json(features, checks), indent=2))
    else:
        print(report.render_text(features, checks, verbose=args.verbose))
    return 0 if report.can_run_containers(checks) else 1


def cmd_ps(_args: argparse.Namespace) -> int:
    import time

    from runtime import state

    print(f"{'NAME':<20} {'ID':<12} {'PID':>7}  {'UP':>8}  COMMAND")
    for found in state.load_all():
        if found.runtime_alive():
            up = f"{time.time() - found.created:.0f}s"
            print(f"{found.name:<20} {found.container_id:<12} {found.init_pid:>7}  {up:>8}  {found.command}")
    return 0


def cmd_gc(_args: argparse.Namespace) -> int:
    from runtime import gc

    removed = gc.collect()
    for line in removed:
        print(line)
    print(f"runtime gc: removed {len(removed)} leftover(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    verbose = words[:1] in (["-v"], ["--verbose"])
    if words[verbose : verbose + 1] == ["run"]:
        from runtime import output, runcli

        output.verbose = verbose
        code = runcli.main(words[verbose + 1 :])
        if argv is None:  # the command itself, not a caller in Python: skip the interpreter's teardown
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    return _main_with_argparse(words)


def _main_with_argparse(words: list[str]) -> int:
    import logging

    args = build_parser().parse_args(words)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="runtime: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except Failure as failure:
        print(f"runtime: error: {failure}", file=sys.stderr)
        return failure.code
    return code
