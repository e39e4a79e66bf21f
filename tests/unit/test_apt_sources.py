"""Reading apt sources and choosing the Debian mirror (no network, no apt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compat.errors import CompatError
from compat.images.apt import (
    DEFAULT_KEYRING,
    AptSource,
    MirrorNotFound,
    PrivateApt,
    ReleaseNotVerified,
    SourcesParseError,
    debian_mirror,
    host_mirror,
    host_sources,
    parse_deb822,
    parse_one_line,
    source_files,
)

MIRROR = "http://mirror.example/debian"
SECURITY = "http://mirror.example/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


# --- one-line format ---


def test_one_line_plain() -> None:
    assert parse_one_line(f"deb {MIRROR} bookworm main contrib\n") == [
        AptSource(MIRROR, ("bookworm",), ("main", "contrib"), None)
    ]


def test_one_line_skips_comments_blank_and_deb_src() -> None:
    text = f"""
# deb {MIRROR} sid main
deb-src {MIRROR} bookworm main

deb {MIRROR} bookworm main  # trailing comment
"""
    assert parse_one_line(text) == [AptSource(MIRROR, ("bookworm",), ("main",), None)]


def test_one_line_options() -> None:
    (src,) = parse_one_line(f"deb [arch=amd64 signed-by=/x] {MIRROR} bookworm main\n")
    assert src == AptSource(MIRROR, ("bookworm",), ("main",), "/x")


def test_one_line_options_with_inner_spaces() -> None:
    (src,) = parse_one_line(f"deb [ signed-by=/k.gpg  arch=amd64 ] {MIRROR} trixie main\n")
    assert src.signed_by == "/k.gpg"
    assert src.suites == ("trixie",)


def test_one_line_flat_repository_has_no_components() -> None:
    (src,) = parse_one_line("deb http://flat.example/repo ./\n")
    assert src == AptSource("http://flat.example/repo", ("./",), (), None)


@pytest.mark.parametrize(
    "line",
    [f"deb {MIRROR}", f"deb {MIRROR} bookworm", f"deb [signed-by] {MIRROR} bookworm main"],
)
def test_one_line_malformed(line: str) -> None:
    with pytest.raises(SourcesParseError):
        parse_one_line(line)


# --- deb822 ---

DEB822 = f"""\
# A comment before the first stanza
Types: deb
# a comment inside a stanza does not end it
URIs: {MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: {KEYRING}

Types: deb deb-src
URIs: {SECURITY}
Suites: bookworm-security
Components: main contrib
Signed-By: {KEYRING}
"""


def test_deb822_stanzas_and_comments() -> None:
    assert parse_deb822(DEB822) == [
        AptSource(MIRROR, ("bookworm", "bookworm-updates"), ("main",), KEYRING),
        AptSource(SECURITY, ("bookworm-security",), ("main", "contrib"), KEYRING),
    ]


def test_deb822_multiple_uris_give_one_source_each() -> None:
    text = (
        "Types: deb\nURIs: http://a.example/debian http://b.example/debian\nSuites: sid\nComponents: main\n"
    )
    assert [s.uri for s in parse_deb822(text)] == ["http://a.example/debian", "http://b.example/debian"]
    assert all(s.suites == ("sid",) and s.signed_by is None for s in parse_deb822(text))


def test_deb822_field_names_are_case_insensitive() -> None:
    (src,) = parse_deb822(f"types: deb\nuris: {MIRROR}\nsuites: trixie\ncomponents: main\nsigned-by: /k\n")
    assert src == AptSource(MIRROR, ("trixie",), ("main",), "/k")


def test_deb822_skips_deb_src_only_and_disabled() -> None:
    text = f"""\
Types: deb-src
URIs: {MIRROR}
Suites: bookworm
Components: main

Types: deb
Enabled: no
URIs: {MIRROR}
Suites: sid
Components: main
"""
    assert parse_deb822(text) == []


def test_deb822_inline_key_is_kept_as_text() -> None:
    text = f"""\
Types: deb
URIs: {MIRROR}
Suites: bookworm
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBFake
 -----END PGP PUBLIC KEY BLOCK-----
"""
    (src,) = parse_deb822(text)
    assert src.signed_by == (
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBFake\n-----END PGP PUBLIC KEY BLOCK-----"
    )


def test_deb822_stanza_without_suites_is_an_error() -> None:
    with pytest.raises(SourcesParseError):
        parse_deb822(f"Types: deb\nURIs: {MIRROR}\n")


# --- choosing the mirror ---


def test_debian_mirror_skips_security() -> None:
    sources = [
        AptSource(SECURITY, ("bookworm-security",), ("main",), KEYRING),
        AptSource(MIRROR, ("bookworm", "bookworm-updates"), ("main",), KEYRING),
    ]
    assert debian_mirror(sources).uri == MIRROR


def test_debian_mirror_skips_security_uri_even_with_plain_suite() -> None:
    sources = [
        AptSource(SECURITY, ("bookworm",), ("main",), None),
        AptSource(MIRROR, ("bookworm",), ("main",), None),
    ]
    assert debian_mirror(sources).uri == MIRROR


def test_debian_mirror_skips_third_party_repos() -> None:
    sources = [
        AptSource("https://vendor.example/apt", ("nodistro",), ("main",), "/usr/share/keyrings/v.gpg"),
        AptSource("https://docker.example/linux/debian", ("bookworm",), ("stable",), "/k/docker.gpg"),
        AptSource("https://pg.example/apt", ("bookworm-pgdg",), ("main",), "/k/pg.gpg"),
        AptSource(MIRROR, ("trixie",), ("main",), None),
    ]
    assert debian_mirror(sources).uri == MIRROR


def test_debian_mirror_prefers_the_debian_keyring() -> None:
    sources = [
        AptSource("https://other.example/debian", ("bookworm",), ("main",), "/k/other.gpg"),
        AptSource(MIRROR, ("bookworm",), ("main",), KEYRING),
    ]
    assert debian_mirror(sources).uri == MIRROR


def test_mirror_not_found_names_the_files() -> None:
    files = [Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d/vendor.sources")]
    with pytest.raises(MirrorNotFound) as info:
        debian_mirror([AptSource(SECURITY, ("bookworm-security",), ("main",), None)], files=files)
    assert "/etc/apt/sources.list, /etc/apt/sources.list.d/vendor.sources" in str(info.value)
    assert info.value.files == tuple(files)
    assert isinstance(info.value, CompatError)
    assert "component main" in info.value.hint
    assert "component main" not in info.value.message


def test_mirror_not_found_when_nothing_was_read(tmp_path: Path) -> None:
    with pytest.raises(MirrorNotFound, match="no apt source files found"):
        host_mirror(tmp_path)


# --- the host's files ---


def _apt_tree(root: Path) -> None:
    parts = root / "etc" / "apt" / "sources.list.d"
    parts.mkdir(parents=True)
    (root / "etc" / "apt" / "sources.list").write_text("# empty but for this comment\n")
    (parts / "debian.sources").write_text(DEB822)
    (parts / "vendor.list").write_text("deb [signed-by=/k/v.gpg] https://vendor.example/apt nodistro main\n")
    (parts / "old.list.disabled").write_text(f"deb {MIRROR} sid main\n")


def test_host_sources_reads_both_formats_in_apt_order(tmp_path: Path) -> None:
    _apt_tree(tmp_path)
    assert [p.name for p in source_files(tmp_path)] == ["sources.list", "debian.sources", "vendor.list"]
    assert [s.uri for s in host_sources(tmp_path)] == [MIRROR, SECURITY, "https://vendor.example/apt"]
    assert host_mirror(tmp_path) == AptSource(MIRROR, ("bookworm", "bookworm-updates"), ("main",), KEYRING)


def test_host_sources_names_the_bad_file(tmp_path: Path) -> None:
    parts = tmp_path / "etc" / "apt" / "sources.list.d"
    parts.mkdir(parents=True)
    (parts / "broken.list").write_text("deb http://x.example/debian\n")
    with pytest.raises(SourcesParseError, match=r"broken\.list"):
        host_sources(tmp_path)
    with pytest.raises(CompatError) as info:
        host_sources(tmp_path)
    assert info.value.hint.startswith(f"fix {parts / 'broken.list'}")


def test_an_unverified_release_hints_at_a_newer_keyring() -> None:
    error = ReleaseNotVerified("trixie", KEYRING, ["ABCD"], "NO_PUBKEY ABCD")
    assert isinstance(error, CompatError)
    assert (
        error.message
        == f"cannot verify the Release file of trixie with {KEYRING} (keys: ABCD): NO_PUBKEY ABCD"
    )
    assert "debian-archive-keyring" in error.hint


# --- the private apt's sources line (no apt run) ---


def test_private_sources_line_uses_the_mirror_and_keyring(tmp_path: Path) -> None:
    apt = PrivateApt(tmp_path, AptSource(MIRROR, ("bookworm",), ("main",), None), "sid")
    assert apt.sources_line == f"deb [arch=amd64 signed-by={DEFAULT_KEYRING}] {MIRROR} sid main\n"
    assert f"Dir::Etc::SourceList={tmp_path}/etc/apt/sources.list" in apt.options()


def test_private_inline_key_is_written_to_a_file(tmp_path: Path) -> None:
    key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBFake\n-----END PGP PUBLIC KEY BLOCK-----"
    apt = PrivateApt(tmp_path, AptSource(MIRROR, ("trixie",), ("main",), key), "trixie")
    apt.prepare()
    assert Path(apt.keyring_path).read_text() == key + "\n"
    assert (tmp_path / "etc" / "apt" / "sources.list").read_text() == apt.sources_line
