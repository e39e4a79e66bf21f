"""Config-file verdicts on the real Debian configs (extracts in tests/data/kconfig) and on crafted files."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import tarfile
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.features import fromconfig, kconfig
from runtime.features.model import Status, Where

CONFIGS = Path(__file__).parents[1] / "data" / "kconfig"
IDS = ["5.10", "6.1", "6.12", "7.x"]
WITHOUT_V1_MEMORY = {"6.12", "7.x"}


def debian(kernel_id: str) -> kconfig.KernelConfig:
    return kconfig.load(CONFIGS / f"debian-{kernel_id}.config")


@pytest.mark.parametrize("kernel_id", IDS)
def test_version_comes_from_the_header(kernel_id: str) -> None:
    config = debian(kernel_id)
    assert config.version is not None
    expected = {"5.10": (5, 10), "6.1": (6, 1), "6.12": (6, 12), "7.x": (7, 2)}[kernel_id]
    assert (config.version.major, config.version.minor) == expected


@pytest.mark.parametrize("kernel_id", IDS)
def test_v1_memory_and_cpuset(kernel_id: str) -> None:
    features = fromconfig.features(debian(kernel_id))
    for controller, option in (("memory", "MEMCG_V1"), ("cpuset", "CPUSETS_V1")):
        verdict = features.cgroups.extras[f"{controller}.v1"]
        where = features.cgroups.controllers[controller].where
        if kernel_id in WITHOUT_V1_MEMORY:
            assert verdict.status is Status.MISSING
            assert f"CONFIG_{option} is not set" in verdict.cause
            assert "cgroup v2" in verdict.hint
            assert where is Where.V2
        else:
            assert verdict.status is Status.OK
            assert where is Where.UNKNOWN  # v1 or v2: the host's init decides


@pytest.mark.parametrize("kernel_id", IDS)
def test_overlay_is_a_module_everywhere(kernel_id: str) -> None:
    config = debian(kernel_id)
    assert config.value("OVERLAY_FS") == "m"
    overlay = fromconfig.features(config).overlay
    assert overlay.loadable.status is Status.OK
    assert "=m" in overlay.loadable.detail
    assert overlay.registered.status is Status.UNKNOWN  # loaded or not is the running host's business


@pytest.mark.parametrize(
    ("kernel_id", "status"), [("5.10", Status.MISSING), ("6.1", Status.OK), ("7.x", Status.OK)]
)
def test_overlay_in_userns_needs_5_11(kernel_id: str, status: Status) -> None:
    assert fromconfig.features(debian(kernel_id)).overlay.in_userns.status is status


@pytest.mark.parametrize(("kernel_id", "status"), [("6.12", Status.UNKNOWN), ("7.x", Status.OK)])
def test_pivot_root_from_initramfs_works_only_from_7_0(kernel_id: str, status: Status) -> None:
    assert fromconfig.features(debian(kernel_id)).pivot_root.usable.status is status


@pytest.mark.parametrize(("kernel_id", "status"), [("5.10", Status.MISSING), ("6.1", Status.OK)])
def test_landlock(kernel_id: str, status: Status) -> None:
    assert fromconfig.features(debian(kernel_id)).security["landlock"].status is status


@pytest.mark.parametrize(("kernel_id", "status"), [("5.10", Status.MISSING), ("6.1", Status.OK)])
def test_cgroup_kill_came_in_5_14(kernel_id: str, status: Status) -> None:
    assert fromconfig.features(debian(kernel_id)).cgroups.extras["cgroup.kill"].status is status


def test_cli_text_explains_the_missing_v1_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(CONFIGS / "debian-6.12.config")]) == 0
    out = capsys.readouterr().out
    assert "CONFIG_MEMCG_V1 is not set: no cgroup v1 memory controller" in out
    assert "lose memory limits" in out


def test_cli_json_for_a_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--json", "--config", str(CONFIGS / "debian-7.x.config")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1
    assert doc["source"] == "config"
    assert doc["cgroup"]["controllers"]["memory"]["where"] == "v2"
    assert doc["cgroup"]["mode"] == "unknown"
    assert doc["pivot_root"]["usable"] is True


def test_a_kernel_without_namespaces_cannot_run_containers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        (CONFIGS / "debian-6.1.config").read_text().replace("CONFIG_PID_NS=y", "# CONFIG_PID_NS is not set")
    )
    crippled = tmp_path / "config-6.1.0-test"
    crippled.write_text(text)
    assert main(["check", "--config", str(crippled)]) == 1
    assert "namespace pid" in capsys.readouterr().out


# --- file formats ----------------------------------------------------------------------------------------


def test_gzipped_config(tmp_path: Path) -> None:
    packed = tmp_path / "config.gz"
    packed.write_bytes(gzip.compress((CONFIGS / "debian-6.12.config").read_bytes()))
    assert kconfig.load(packed).value("MEMCG_V1") == "n"


def _ar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, payload in members.items():
        out.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(payload):<10}`\n".encode())
        out.write(payload + (b"\n" if len(payload) % 2 else b""))
    return out.getvalue()


def _tar_xz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return lzma.compress(raw.getvalue())


def _deb(tmp_path: Path, files: dict[str, bytes], data_name: str = "data.tar.xz") -> Path:
    deb = tmp_path / "linux-image-test.deb"
    deb.write_bytes(
        _ar({"debian-binary": b"2.0\n", "control.tar.xz": _tar_xz({}), data_name: _tar_xz(files)})
    )
    return deb


def test_config_inside_a_deb(tmp_path: Path) -> None:
    text = (CONFIGS / "debian-6.12.config").read_bytes()
    deb = _deb(tmp_path, {"./boot/vmlinuz-6.12.9-test": b"kernel", "./boot/config-6.12.9-test": text})
    config = kconfig.load(deb)
    assert config.version is not None
    assert config.version.release == "6.12.9-test"
    assert config.value("CPUSETS_V1") == "n"


def test_config_beside_the_modules_as_in_sid(tmp_path: Path) -> None:
    text = (CONFIGS / "debian-7.x.config").read_bytes()
    deb = _deb(tmp_path, {"./usr/lib/modules/7.2.1-test/config": text})
    assert kconfig.load(deb).version.release == "7.2.1-test"  # type: ignore[union-attr]


def test_deb_without_config_names_linux_base(tmp_path: Path) -> None:
    deb = _deb(tmp_path, {"./usr/share/doc/linux-image/changelog": b"x"})
    with pytest.raises(kconfig.ConfigError) as error:
        kconfig.load(deb)
    assert "linux-base" in error.value.hint


def test_zstd_deb_is_refused(tmp_path: Path) -> None:
    deb = _deb(tmp_path, {"./boot/config-1": b"CONFIG_X=y"}, data_name="data.tar.zst")
    with pytest.raises(kconfig.ConfigError, match=r"data\.tar\.zst"):
        kconfig.load(deb)


def test_not_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\n")
    assert main(["check", "--config", str(junk)]) == 2
    assert "not a kernel config" in capsys.readouterr().err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(tmp_path / "absent")]) == 2
    assert "cannot read" in capsys.readouterr().err
