"""What the installed wheel gives: the analyzer as a native executable, an extension that is
the recorder alone, and the license and metadata a package people trust carries.

Everything is checked on the installed distribution of this test venv (what `make build`
installed from the wheel), and the crate graph with `cargo tree` on the checkout.
"""

import base64
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import tomllib
from importlib import metadata
from pathlib import Path

import aiocop
import pytest

ROOT = Path(__file__).resolve().parent.parent
ANALYZE = shutil.which("aiocop-analyze", path=os.path.dirname(sys.executable))
ELF_MAGIC = b"\x7fELF"
# Crates only the analyzer uses. Even a stripped library names its dependencies in the
# source paths of its panic messages (`.../clap_builder-4.5.60/src/...`).
ANALYZER_CRATES = ("clap", "clap_builder", "clap_lex", "minijinja", "inferno", "comfy-table", "indicatif")
ANALYZER_SOURCE = re.compile(
    rb"(?:^|[/\\])(" + b"|".join(re.escape(c.encode()) for c in ANALYZER_CRATES) + rb")-\d+\.\d+\.\d+[/\\]"
    rb"|analyzer[/\\]src[/\\]"
)

# cargo builds the sdist's check and reads the crate graph; the Debian sid root that runs
# 3.14 and 3.15 (tools/sid-root.sh) has no Rust toolchain, so there these run on 3.11-3.13 only.
needs_cargo = pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo (not in the sid root)")


def analyzer_sources_named_in(library: bytes) -> set[str]:
    """The analyzer crates (or the analyzer's own sources) whose paths appear in `library`."""
    matches = ANALYZER_SOURCE.finditer(library)
    return {match.group(1).decode() if match.group(1) else "analyzer/src" for match in matches}


def test_aiocop_analyze_on_the_path_is_a_native_executable():
    assert ANALYZE, "the wheel installs aiocop-analyze beside this Python"
    with open(ANALYZE, "rb") as executable:
        assert executable.read(4) == ELF_MAGIC, f"{ANALYZE} is not an ELF executable (a script?)"
    assert os.access(ANALYZE, os.X_OK)

    result = subprocess.run([ANALYZE, "--version"], capture_output=True, text=True, timeout=10)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"aiocop-analyze {aiocop.__version__}\n", "")


def test_aiocop_analyze_version_starts_in_milliseconds():
    assert ANALYZE
    durations_s = []
    for _ in range(10):
        started = time.perf_counter()
        subprocess.run([ANALYZE, "--version"], capture_output=True, check=True, timeout=10)
        durations_s.append(time.perf_counter() - started)
    assert min(durations_s) < 0.020, f"best of 10: {min(durations_s) * 1000:.1f} ms"


def test_the_executable_belongs_to_the_installed_distribution():
    """pip records it as one of aiocop's files, so `pip uninstall aiocop` removes it."""
    installed = {Path(file.locate()).resolve() for file in metadata.distribution("aiocop").files or []}
    assert Path(ANALYZE).resolve() in installed


def test_native_extension_names_no_analyzer_crate():
    library = Path(aiocop._native.__file__).read_bytes()
    assert library.startswith(ELF_MAGIC)
    assert analyzer_sources_named_in(library) == set()
    assert not hasattr(aiocop._native, "analyze_main")


def test_the_analyzer_check_finds_analyzer_crates_in_the_analyzer_itself():
    """The check above can fail: the analyzer executable, stripped too, names them."""
    assert ANALYZE
    found = analyzer_sources_named_in(Path(ANALYZE).read_bytes())
    assert {"clap_builder", "minijinja", "inferno"} <= found, found


def elf_section_names(elf: bytes) -> set[str]:
    """The section names of a 64-bit little-endian ELF file (what `readelf -S` lists)."""
    (section_headers_offset,) = struct.unpack_from("<Q", elf, 0x28)
    header_size, count, names_index = struct.unpack_from("<HHH", elf, 0x3A)

    def header(index: int) -> tuple[int, int]:
        """A section's name offset and file offset."""
        at = section_headers_offset + index * header_size
        return struct.unpack_from("<I", elf, at)[0], struct.unpack_from("<Q", elf, at + 0x18)[0]

    names_offset = header(names_index)[1]
    return {
        elf[names_offset + name : elf.index(b"\0", names_offset + name)].decode()
        for name, _ in map(header, range(count))
    }


def test_the_extension_and_the_executable_are_stripped():
    """No symbol table: it is a large part of an extension every monitored process maps."""
    for path in (aiocop._native.__file__, ANALYZE):
        sections = elf_section_names(Path(path).read_bytes())
        assert ".text" in sections
        assert ".symtab" not in sections, path


def test_import_aiocop_maps_no_analyzer_code():
    """The only native code `import aiocop` maps from the package is the recorder's extension."""
    program = (
        "import aiocop, sys\n"
        "mapped = {line.split()[-1] for line in open('/proc/self/maps') if '/aiocop' in line}\n"
        "print(*sorted(mapped), sep='\\n')\n"
        "print(*sorted(name for name in sys.modules if name.startswith('aiocop')), sep='\\n')\n"
    )
    lines = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    mapped = [line for line in lines if line.startswith("/")]
    assert [Path(path).name for path in mapped] == [Path(aiocop._native.__file__).name], mapped
    assert not any("analyze" in line for line in lines), lines


@needs_cargo
def test_the_recorder_crate_does_not_depend_on_the_analyzer():
    tree = subprocess.run(
        ["cargo", "tree", "--offline", "--package", "aiocop-recorder", "--edges", "normal,build", "--prefix", "none"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    crates = {line.split()[0] for line in tree.splitlines() if line.strip()}
    assert "aiocop-trace" in crates
    analyzer_crates = {"aiocop-analyze", *ANALYZER_CRATES}
    assert crates.isdisjoint(analyzer_crates), sorted(crates & analyzer_crates)


def test_wheel_carries_the_mit_license_and_project_metadata():
    distribution = metadata.distribution("aiocop")
    license_files = [file for file in distribution.files or [] if file.name == "LICENSE"]
    assert len(license_files) == 1, distribution.files
    assert license_files[0].read_text() == (ROOT / "LICENSE").read_text()
    assert license_files[0].read_text().startswith("MIT License\n")

    fields = distribution.metadata
    assert fields["License-Expression"] == "MIT"
    assert fields.get_all("License-File") == ["LICENSE"]
    assert "Upstream API, https://pypi.org/project/aiocop/1.2.1/" in (fields.get_all("Project-URL") or [])
    # The long description is the README followed by the changelog, whole.
    description = distribution.read_text("METADATA") or ""
    assert "[CHANGELOG.md](CHANGELOG.md)" in description
    assert description.rstrip().endswith((ROOT / "CHANGELOG.md").read_text().rstrip())


def test_wheel_record_hashes_match_the_files_the_backend_rewrote():
    """The build backend rewrites METADATA and adds the executable: RECORD must say so."""
    distribution = metadata.distribution("aiocop")
    rewritten = [file for file in distribution.files or [] if file.name in ("METADATA", "aiocop-analyze")]
    assert len(rewritten) == 2, distribution.files
    for file in rewritten:
        assert file.hash is not None and file.hash.mode == "sha256", file
        digest = base64.urlsafe_b64encode(hashlib.sha256(file.read_binary()).digest()).rstrip(b"=").decode()
        assert digest == file.hash.value, file


@needs_cargo
def test_sdist_holds_what_builds_the_extension_and_the_executable(tmp_path, monkeypatch):
    """The sdist has the build backend, the analyzer's sources with the analyzer a workspace
    member (maturin alone trims it away, and cargo builds only members), LICENSE and CHANGELOG.md."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    monkeypatch.syspath_prepend(str(ROOT / "build-backend"))
    import aiocop_build

    name = aiocop_build.build_sdist(str(tmp_path))
    with tarfile.open(tmp_path / name) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        names = set(sdist.getnames())
        manifest = tomllib.loads(sdist.extractfile(f"{top}/Cargo.toml").read().decode())  # type: ignore[union-attr]
    assert "analyzer" in manifest["workspace"]["members"]
    needed = ["build-backend/aiocop_build.py", "analyzer/Cargo.toml", "analyzer/src/main.rs", "LICENSE", "CHANGELOG.md"]
    assert [path for path in needed if f"{top}/{path}" not in names] == []
