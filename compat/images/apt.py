"""Download Debian packages with a private apt state, from the mirror the host already uses.

The host's apt sources say which Debian mirror this machine may reach; no mirror
name is written into the project. A PrivateApt keeps its lists, caches and
sources under one directory, so it can follow any suite (bullseye .. sid)
without touching the host's own apt state.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cmp_to_key
from pathlib import Path
from urllib.parse import quote

from compat.errors import CompatError
from compat.images.cache import file_digest
from compat.proc import CommandError, run, tail

log = logging.getLogger(__name__)

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

# Suites Debian itself publishes under a plain name; anything with a suffix
# (-security, -updates, -backports) or a vendor's own name is not "the mirror".
DEBIAN_SUITES = frozenset(
    {
        "oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental",
        "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    }
)  # fmt: skip

# A Debian package name (Policy 5.6.1): two or more of a-z 0-9 + - ., starting with a letter or digit.
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")

# apt's messages are parsed below, so they must not be translated.
_APT_ENV = {"LC_ALL": "C"}
_SIGNATURE_TROUBLE = re.compile(r"NO_PUBKEY|EXPKEYSIG|KEYEXPIRED|is not signed|BADSIG")
_MISSING_KEY = re.compile(r"NO_PUBKEY ([0-9A-F]+)")


class AptError(CompatError):
    """Base class for the errors of this module."""


class SourcesParseError(AptError):
    """An apt sources entry that apt itself would reject."""


class MirrorNotFound(AptError):
    """No plain Debian mirror among the host's apt sources."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = tuple(files)
        read = ", ".join(str(f) for f in self.files) or "no apt source files found"
        super().__init__(
            f"no Debian mirror in the host's apt sources; read: {read}",
            "add a 'deb' entry with a plain Debian suite such as bookworm and component main "
            "(a -security archive does not count)",
        )


class PackageNotFound(AptError):
    """The private apt state has no such package."""


class ReleaseNotVerified(AptError):
    """A suite's Release file is signed by no key in the keyring in use."""

    def __init__(self, suite: str, keyring: str, missing_keys: Sequence[str], detail: str) -> None:
        self.suite = suite
        self.keyring = keyring
        self.missing_keys = tuple(missing_keys)
        keys = ", ".join(self.missing_keys) or "unknown"
        super().__init__(
            f"cannot verify the Release file of {suite} with {keyring} (keys: {keys}): {detail}",
            "install a newer debian-archive-keyring on the host",
        )


@dataclass(frozen=True)
class AptSource:
    """One `deb` entry: a URI with its suites and components."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None


# --- reading the host's sources --------------------------------------------------------------


_ONE_LINE = re.compile(r"(?P<type>\S+)\s+(?:\[(?P<opts>[^\]]*)\]\s*)?(?P<rest>.*)")


def parse_one_line(text: str) -> list[AptSource]:
    """Parse sources.list one-line format; deb-src and comments are skipped."""
    sources: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = _ONE_LINE.fullmatch(line)
        if not line or match is None or match["type"] != "deb":
            continue
        fields = match["rest"].split()
        # A flat repository ("URI ./") has no components; any other suite needs one.
        if len(fields) < 2 or (not fields[1].endswith("/") and len(fields) < 3):
            raise SourcesParseError(f"malformed sources.list line: {raw.strip()!r}")
        options = dict(_option(word) for word in (match["opts"] or "").split())
        sources.append(AptSource(fields[0], (fields[1],), tuple(fields[2:]), options.get("signed-by")))
    return sources


def _option(word: str) -> tuple[str, str]:
    key, sep, value = word.partition("=")
    if not sep:
        raise SourcesParseError(f"malformed sources.list option: {word!r}")
    return key.rstrip("+-").lower(), value


def parse_deb822(text: str) -> list[AptSource]:
    """Parse a .sources (deb822) file: one AptSource per URI of each enabled deb stanza."""
    sources: list[AptSource] = []
    for stanza in _stanzas(text):
        if "deb" not in stanza.get("types", "").split() or stanza.get("enabled", "yes").lower() == "no":
            continue
        uris, suites = stanza.get("uris", "").split(), tuple(stanza.get("suites", "").split())
        if not uris or not suites:
            raise SourcesParseError(f"deb822 stanza without URIs or Suites: {stanza}")
        components = tuple(stanza.get("components", "").split())
        signed_by = stanza.get("signed-by") or None
        sources.extend(AptSource(uri, suites, components, signed_by) for uri in uris)
    return sources


def _stanzas(text: str) -> list[dict[str, str]]:
    """Split deb822 text into field maps (lower-case keys); continuation lines join with newlines."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key: str | None = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif raw[0] in " \t":
            if key is None:
                raise SourcesParseError(f"deb822 continuation line outside a field: {raw!r}")
            # A lone "." stands for an empty line inside a value (e.g. an inline key block).
            line = raw.strip()
            current[key] = f"{current[key]}\n{'' if line == '.' else line}".lstrip("\n")
        else:
            name, sep, value = raw.partition(":")
            if not sep:
                raise SourcesParseError(f"deb822 line is not 'Field: value': {raw!r}")
            key = name.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def source_files(root: Path = Path("/")) -> list[Path]:
    """The apt source files under root, in the order apt reads them."""
    etc = root / "etc" / "apt"
    main = [etc / "sources.list"] if (etc / "sources.list").is_file() else []
    parts_dir = etc / "sources.list.d"
    parts = [p for p in parts_dir.glob("*") if p.suffix in (".list", ".sources") and p.is_file()]
    return main + sorted(parts, key=lambda p: p.name)


def host_sources(root: Path = Path("/")) -> list[AptSource]:
    """Every deb entry configured on the host (or on the tree at root)."""
    sources: list[AptSource] = []
    for path in source_files(root):
        parse = parse_deb822 if path.suffix == ".sources" else parse_one_line
        try:
            sources.extend(parse(path.read_text(encoding="utf-8")))
        except SourcesParseError as exc:
            raise SourcesParseError(
                f"{path}: {exc.message}", f"fix {path}; apt itself would reject it"
            ) from exc
    return sources


def is_security(source: AptSource) -> bool:
    return source.uri.rstrip("/").endswith("-security") or any(
        s.endswith("-security") or s.endswith("/updates") for s in source.suites
    )


def debian_mirror(sources: Iterable[AptSource], *, files: Sequence[Path] = ()) -> AptSource:
    """The entry that serves plain Debian suites; files only name what was read, for the error."""
    candidates = [
        s
        for s in sources
        if not is_security(s) and "main" in s.components and any(x in DEBIAN_SUITES for x in s.suites)
    ]
    if not candidates:
        raise MirrorNotFound(files)
    # A source pinned to some other keyring is more likely a third-party repo reusing a codename.
    return min(candidates, key=lambda s: s.signed_by is not None and "debian-archive" not in s.signed_by)


def host_mirror(root: Path = Path("/")) -> AptSource:
    """debian_mirror() of the host's own apt sources."""
    return debian_mirror(host_sources(root), files=source_files(root))


# --- versions and packages -------------------------------------------------------------------


def compare_versions(a: str, b: str) -> int:
    """Debian version order (-1, 0, 1), as dpkg itself defines it."""
    if a == b:
        return 0
    lower = run(["dpkg", "--compare-versions", a, "lt", b], check=False).returncode == 0
    return -1 if lower else 1


def newest(versions: Iterable[str]) -> str:
    return max(versions, key=cmp_to_key(compare_versions))


def extract_deb(deb: Path, dest: Path) -> Path:
    """Unpack a .deb's files (not its maintainer scripts) under dest."""
    dest.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-x", deb, dest])
    return dest


# --- the private apt state -------------------------------------------------------------------


@dataclass(frozen=True)
class PrivateApt:
    """apt pointed at one suite of a mirror, with all of its state under root.

    The host's apt.conf.d is still read (it may carry proxy or timeout settings
    that this machine needs); every path and the architecture are overridden.
    """

    root: Path
    mirror: AptSource
    suite: str
    arch: str = "amd64"
    components: tuple[str, ...] = ("main",)
    keyring: str | None = None  # overrides mirror.signed_by, e.g. with a newer archive keyring

    @property
    def keyring_path(self) -> str:
        key = self.keyring or self.mirror.signed_by or DEFAULT_KEYRING
        if key.startswith("-----BEGIN"):
            # deb822 may embed the key itself; apt's one-line format needs a file.
            inline = self.root / "etc" / "apt" / "keyrings" / "inline.asc"
            return str(inline)
        return key

    @property
    def sources_line(self) -> str:
        opts = f"[arch={self.arch} signed-by={self.keyring_path}]"
        return f"deb {opts} {self.mirror.uri} {self.suite} {' '.join(self.components)}\n"

    def prepare(self) -> None:
        """Create the directory tree and sources.list; safe to call again."""
        for sub in ("etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/trusted.gpg.d",
                    "etc/apt/keyrings", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial",
                    "var/lib/dpkg", "var/log/apt"):  # fmt: skip
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        key = self.keyring or self.mirror.signed_by or ""
        if key.startswith("-----BEGIN"):
            Path(self.keyring_path).write_text(key + "\n", encoding="utf-8")
        status = self.root / "var" / "lib" / "dpkg" / "status"
        if not status.exists():
            status.touch()
        (self.root / "etc" / "apt" / "sources.list").write_text(self.sources_line, encoding="utf-8")

    def options(self) -> list[str]:
        r = self.root
        settings = {
            "Dir::State": r / "var/lib/apt",
            "Dir::State::Lists": r / "var/lib/apt/lists",
            "Dir::State::status": r / "var/lib/dpkg/status",
            "Dir::Cache": r / "var/cache/apt",
            # Caching the parsed lists is what makes repeated apt-cache calls cheap.
            "Dir::Cache::pkgcache": r / "var/cache/apt/pkgcache.bin",
            "Dir::Cache::srcpkgcache": r / "var/cache/apt/srcpkgcache.bin",
            "Dir::Cache::Archives": r / "var/cache/apt/archives",
            "Dir::Etc::SourceList": r / "etc/apt/sources.list",
            "Dir::Etc::SourceParts": r / "etc/apt/sources.list.d",
            "Dir::Etc::Preferences": r / "etc/apt/preferences",
            "Dir::Etc::PreferencesParts": r / "etc/apt/preferences.d",
            "Dir::Etc::Trusted": r / "etc/apt/trusted.gpg",
            "Dir::Etc::TrustedParts": r / "etc/apt/trusted.gpg.d",
            "Dir::Log": r / "var/log/apt",
            "APT::Architecture": self.arch,
            "APT::Architectures": self.arch,
            "Acquire::Languages": "none",
        }
        return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]

    def _apt(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        return run([tool, "-q", *self.options(), *args], capture=True, cwd=cwd, env=_APT_ENV).stdout

    def update(self) -> None:
        """Fetch the suite's lists; ReleaseNotVerified if the keyring cannot check them."""
        self.prepare()
        argv = ["apt-get", "-q", *self.options(), "update", "--error-on=any"]
        proc = run(argv, check=False, capture=True, env=_APT_ENV)
        if proc.returncode == 0:
            log.info("apt lists for %s updated under %s", self.suite, self.root)
            return
        if _SIGNATURE_TROUBLE.search(proc.stderr) or _SIGNATURE_TROUBLE.search(proc.stdout):
            missing = sorted(set(_MISSING_KEY.findall(proc.stderr + proc.stdout)))
            raise ReleaseNotVerified(self.suite, self.keyring_path, missing, tail(proc.stderr))
        raise CommandError(argv, proc.returncode, tail(proc.stderr))

    def record(self, package: str) -> dict[str, str]:
        """The candidate's Packages stanza (single-line fields only)."""
        proc = run(
            ["apt-cache", "-q", *self.options(), "show", "--no-all-versions", package],
            check=False, capture=True, env=_APT_ENV,
        )  # fmt: skip
        if proc.returncode != 0 or not proc.stdout.strip():
            raise PackageNotFound(f"{package} is not in {self.suite} ({self.arch})")
        stanza = _stanzas(proc.stdout)[0]
        return {k: v for k, v in stanza.items() if "\n" not in v}

    def candidate_version(self, package: str) -> str:
        return self.record(package)["version"]

    def search_names(self, regex: str) -> list[str]:
        """Sorted names of real packages that fully match regex."""
        pattern = re.compile(regex)
        names = self._apt("apt-cache", "pkgnames").split()
        return sorted(n for n in names if pattern.fullmatch(n))

    def download(self, package: str, dest: Path) -> Path:
        """The candidate .deb in dest; a file already there is kept if its sha256 matches."""
        rec = self.record(package)
        dest.mkdir(parents=True, exist_ok=True)
        # apt names downloads name_version_arch.deb with the epoch colon escaped.
        deb = dest / f"{package}_{quote(rec['version'], safe='+~.-')}_{rec['architecture']}.deb"
        if deb.is_file() and file_digest(deb) == rec.get("sha256"):
            log.info("reusing %s", deb)
            return deb
        self._apt("apt-get", "download", f"{package}={rec['version']}", cwd=dest)
        if not deb.is_file():
            raise AptError(f"apt-get download of {package} left no {deb.name} in {dest}")
        return deb


# --- keyring fallback ------------------------------------------------------------------------


def newer_keyring(mirror: AptSource, suites: Sequence[str], workdir: Path) -> Path:
    """debian-archive-keyring from the first suite in suites that the current keyring verifies.

    Trust is chained: that suite's Release is checked with the host's keyring,
    the package's hash with that Release, so its keys are as good as the host's.
    """
    tried: list[str] = []
    for suite in suites:
        apt = PrivateApt(workdir / f"apt-{suite}", mirror, suite)
        try:
            apt.update()
        except ReleaseNotVerified as exc:
            tried.append(f"{suite}: {exc.message}")
            continue
        deb = apt.download("debian-archive-keyring", workdir / "debs")
        tree = extract_deb(deb, workdir / f"keyring-{suite}")
        for name in ("debian-archive-keyring.gpg", "debian-archive-keyring.pgp"):
            path = tree / "usr" / "share" / "keyrings" / name
            if path.is_file():
                log.info("using %s from %s (%s)", name, suite, deb.name)
                return path
        tried.append(f"{suite}: {deb.name} has no combined archive keyring")
    raise AptError(
        "no newer debian-archive-keyring could be verified: " + "; ".join(tried),
        "install a newer debian-archive-keyring on the host",
    )


def update_verified(apt: PrivateApt, fallback_suites: Sequence[str], workdir: Path) -> PrivateApt:
    """apt.update(); if its Release cannot be verified, retry with a keyring from fallback_suites.

    Returns the PrivateApt that worked (possibly with a different keyring).
    """
    try:
        apt.update()
        return apt
    except ReleaseNotVerified as exc:
        log.warning("%s; looking for a newer debian-archive-keyring", exc.message)
        others = [s for s in fallback_suites if s != apt.suite]
        keyring = newer_keyring(apt.mirror, others, workdir)
    retry = dataclasses.replace(apt, keyring=str(keyring))
    retry.update()
    return retry
