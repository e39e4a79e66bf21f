"""The runtime side of `runtime run`: decide, refuse early, prepare the root and cgroups, launch, clean up.

The decisions are decide.py's (each refused, exit 125, before anything exists), the setup process and
the wait launch.py's. Here: the order of the steps, the container's root from an image (a flattened
copy, or the overlay the setup process mounts), the cgroups made and removed, the seccomp filter
compiled, and what is released whatever happens. This module and what it imports are the start path:
plain classes and os, no logging, no subprocess, no JSON.
"""

from __future__ import annotations

import os

from runtime import launch, output, state
from runtime.cgroups.base import CgroupError
from runtime.cgroups.manager import DevicesUnrestricted, Manager
from runtime.decide import choose_cgroups, choose_seccomp, choose_storage, choose_userns, id_range
from runtime.errors import EXIT_RUNTIME, Failure
from runtime.linux import constants as c

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    from runtime.seccomp.profile import Profile
    from runtime.spec import ContainerSpec

NODEV_FALLBACK = "nodev mounts, and seccomp refuses mknod of devices (no cgroup here can restrict devices)"


def run(spec: ContainerSpec) -> int:
    if os.geteuid() != 0:
        hint = "run it as root (sudo); rootless containers are not supported yet"
        raise Failure("runtime run needs root", hint, EXIT_RUNTIME)
    manager = choose_cgroups(spec)
    userns = choose_userns(spec.userns)
    storage = choose_storage(spec.image.storage) if spec.image else ""
    profile = choose_seccomp(spec.seccomp)
    record = _claim(spec, manager)
    overlay = None
    try:
        if spec.image:
            overlay = _image_root(spec, storage, userns)
        else:
            _mount_points(spec.rootfs)
        devices_held = _create_cgroups(manager, spec)
        if not devices_held:
            output.note(f"devices: {NODEV_FALLBACK}")
        seccomp = _seccomp_filter(profile, deny_device_mknod=not devices_held)
        return launch.start_and_wait(spec, manager, record, userns, overlay, seccomp, nodev=not devices_held)
    finally:
        _destroy_cgroups(manager)
        if spec.image:
            _remove_container_dir(spec)
        state.release(record)


def _claim(spec: ContainerSpec, manager: Manager) -> state.State:
    directories = tuple(manager.directories())
    command = " ".join(spec.argv)
    if spec.image is None:
        return state.claim(spec.container_id, spec.name, command, directories)
    lock = spec.image.store.lock(exclusive=False)  # `image rm` looks for users under the exclusive lock
    try:
        return state.claim(spec.container_id, spec.name, command, directories, spec.image.record.image_id)
    finally:
        os.close(lock)


def _seccomp_filter(chosen: Profile | None, deny_device_mknod: bool) -> tuple[bytes, int] | None:
    """The compiled filter and its flags; unconfined still gets the mknod rule where it stands in for
    a devices cgroup."""
    from runtime.seccomp import bpf, profile

    if chosen is None:
        if not deny_device_mknod:
            return None
        chosen = profile.allow_all()
    program = bpf.build(chosen, set(c.DEFAULT_CAPABILITIES.values()), deny_device_mknod=deny_device_mknod)
    return program, chosen.flags


def _mount_points(rootfs: str) -> None:
    """Made here, as host root: a container root mapped to another uid may not write the rootfs."""
    for name in ("proc", "sys", "dev"):
        point = os.path.join(rootfs, name)
        if not os.path.isdir(point):
            try:
                os.mkdir(point, 0o755)
            except OSError as exc:
                raise Failure(f"cannot make /{name} in {rootfs}: {exc.strerror}", "", EXIT_RUNTIME) from exc


# --- images ---------------------------------------------------------------------------------------------


def _container_dir(spec: ContainerSpec) -> str:
    assert spec.image is not None
    return spec.image.store.sub("containers", spec.container_id)


def _image_root(spec: ContainerSpec, storage: str, userns: str) -> tuple[str, str, str] | None:
    """Copy mode: the flattened root, made now. Overlay: the (cwd, target, options) that the setup
    process mounts in a mount namespace of its own, so the host never sees the mount.

    The container's directory is 0700, owned by the host uid of the container's root: that uid must
    pass through to reach its root, and no other local user may (the root holds the image's setuid
    binaries and device nodes)."""
    assert spec.image is not None
    store, record = spec.image.store, spec.image.record
    directory = _container_dir(spec)
    os.makedirs(directory, mode=0o700)
    if userns:
        start, _ = id_range()
        os.chown(directory, start, start)
    if storage == "copy":
        from runtime.storage.flatten import flatten

        spec.rootfs = os.path.join(directory, "rootfs")
        flatten([store.layer_dir(layer) for layer in record.layers], spec.rootfs)
        _mount_points(spec.rootfs)
        return None
    from runtime.storage.overlay import mount_options

    upper, work, merged = (os.path.join(directory, name) for name in ("upper", "work", "merged"))
    for path in (upper, work, merged):
        os.mkdir(path, 0o755)
    _mount_points(upper)
    spec.rootfs = merged
    try:
        return store.path, merged, mount_options(store, record.layers, upper, work)
    except OverflowError as exc:
        raise Failure(f"--storage overlay: {exc}", "use --storage copy", EXIT_RUNTIME) from exc


def _remove_container_dir(spec: ContainerSpec) -> None:
    import shutil

    shutil.rmtree(_container_dir(spec), ignore_errors=True)


# --- cgroups --------------------------------------------------------------------------------------------


def _create_cgroups(manager: Manager, spec: ContainerSpec) -> bool:
    """Made, limited and closed to all but Docker's default devices before the init is moved in.
    Returns whether the devices restriction is in place (manager.devices_restricted says it too);
    where it is not, the caller falls back to nodev mounts and a seccomp mknod deny."""
    try:
        manager.create()
        manager.apply(spec.limits)
    except OSError as exc:
        raise Failure(f"cannot set up the container's cgroups: {exc}", "", EXIT_RUNTIME) from exc
    try:
        output.note(manager.restrict_devices())
    except DevicesUnrestricted as reason:
        output.note(f"devices: not limited by a cgroup: {reason}")
        return False
    return True


def _destroy_cgroups(manager: Manager) -> None:
    try:
        manager.destroy()
    except CgroupError as exc:
        output.warn(f"could not remove a cgroup: {exc} (runtime gc retries)")
