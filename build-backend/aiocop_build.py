"""The PEP 517 build backend of the aiocop wheel: maturin's, plus the analyzer as an executable.

maturin builds one Rust artifact per wheel: here the `aiocop._native` extension (the recorder).
The analyzer is a separate program, and a fast one only as a native executable (a console
script would import Python and the package first). So this backend lets maturin build the
wheel, then builds the `aiocop-analyze` binary with cargo and adds it to the wheel's
`aiocop-<version>.data/scripts/`, which installers put on the PATH beside the interpreter's
own scripts, as ruff and py-spy ship theirs. `pip install .` from a checkout therefore needs
nothing beyond maturin, cargo and a C compiler, and no index that holds this project.

Every other hook is maturin's own. pyproject.toml names this module with `backend-path`.
maturin's options pass through as usual (`MATURIN_PEP517_ARGS`, e.g. `--compatibility
manylinux_2_34` for a wheel to publish: its backend tags wheels `linux_*` by default); the
manylinux check covers the extension only, so a wheel to publish is built where the
analyzer's glibc is that old too (a manylinux container).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import maturin  # type: ignore[import-untyped]
from maturin import (  # noqa: F401  (the hooks this backend passes on unchanged)
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

ANALYZER_PACKAGE = "aiocop-analyze"
ANALYZER_BINARY = "aiocop-analyze"
# The workspace root: this file is build-backend/aiocop_build.py.
WORKSPACE = Path(__file__).resolve().parent.parent
# rwxr-xr-x, as a regular file, in the high 16 bits of a zip entry's external attributes:
# installers give a script the executable bit only when its entry has one.
EXECUTABLE_FILE_ATTR = 0o100755 << 16
# The root Cargo.toml's list of workspace members.
WORKSPACE_MEMBERS = re.compile(r"^members = \[.*?\]", re.MULTILINE | re.DOTALL)
# Wheels are reproducible: every entry maturin writes has this date too.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def build_wheel(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    name: str = maturin.build_wheel(wheel_directory, config_settings, metadata_directory)
    finish_wheel(Path(wheel_directory) / name, build_analyzer())
    return name


def build_editable(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    name: str = maturin.build_editable(wheel_directory, config_settings, metadata_directory)
    finish_wheel(Path(wheel_directory) / name, build_analyzer())
    return name


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    name: str = maturin.build_sdist(sdist_directory, config_settings)
    keep_analyzer_in_workspace(Path(sdist_directory) / name)
    return name


def keep_analyzer_in_workspace(sdist_path: Path) -> None:
    """Puts the analyzer back among the sdist's workspace members.

    maturin trims the workspace's `members` to the extension's own crates, and cargo builds
    only members; the analyzer's sources are in the sdist (pyproject.toml's include)."""
    members = WORKSPACE_MEMBERS.search((WORKSPACE / "Cargo.toml").read_text())
    if members is None:
        sys.exit("aiocop build: Cargo.toml has no `members = [...]` line")
    with tarfile.open(sdist_path) as sdist:
        entries = [(info, contents(sdist, info)) for info in sdist.getmembers()]
    # Every entry is under one directory, `aiocop-<version>/`.
    root_manifest = entries[0][0].name.split("/")[0] + "/Cargo.toml"
    partial = sdist_path.with_name(sdist_path.name + ".partial")
    with tarfile.open(partial, "w:gz") as sdist:
        for info, data in entries:
            if info.name == root_manifest and data is not None:
                data = WORKSPACE_MEMBERS.sub(lambda _: members[0], data.decode(), count=1).encode()
                info.size = len(data)
            sdist.addfile(info, io.BytesIO(data) if data is not None else None)
    os.replace(partial, sdist_path)


def contents(archive: tarfile.TarFile, info: tarfile.TarInfo) -> bytes | None:
    """A regular file's bytes; None for a directory or link."""
    file = archive.extractfile(info)
    return file.read() if file is not None else None


def build_analyzer() -> Path:
    """Builds the analyzer binary in release mode and returns its path.

    cargo reports where it put the executable (CARGO_TARGET_DIR, CARGO_BUILD_TARGET and the
    like are honoured), so the path is read from its messages rather than guessed."""
    cargo = os.environ.get("CARGO", "cargo")
    command = [
        cargo,
        "build",
        "--release",
        "--package",
        ANALYZER_PACKAGE,
        "--bin",
        ANALYZER_BINARY,
        "--message-format=json-render-diagnostics",
    ]
    # The analyzer does not depend on the interpreter: a build for several Pythons (the Makefile's,
    # each with a CARGO_TARGET_DIR of its own for the extension) can share one build of it.
    env = dict(os.environ)
    if os.environ.get("AIOCOP_ANALYZER_TARGET_DIR"):
        env["CARGO_TARGET_DIR"] = os.environ["AIOCOP_ANALYZER_TARGET_DIR"]
    # cargo's progress and diagnostics go to stderr, shown by the installer; stdout is JSON.
    result = subprocess.run(command, cwd=WORKSPACE, stdout=subprocess.PIPE, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"aiocop build: `{' '.join(command)}` failed with exit code {result.returncode}")
    for line in result.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message["target"]["name"] == ANALYZER_BINARY:
            executable = message.get("executable")
            if executable:
                return Path(executable)
    sys.exit(f"aiocop build: cargo built no `{ANALYZER_BINARY}` executable")


def finish_wheel(wheel_path: Path, executable: Path) -> None:
    """Rewrites the wheel with `executable` in its `.data/scripts/`, the changelog in its
    METADATA, and a RECORD that lists both as they are."""
    with zipfile.ZipFile(wheel_path) as wheel:
        entries = [(info, wheel.read(info)) for info in wheel.infolist()]
    record_name = next(info.filename for info, _ in entries if info.filename.endswith(".dist-info/RECORD"))
    dist_info = record_name.removesuffix("/RECORD")
    script_name = f"{dist_info.removesuffix('.dist-info')}.data/scripts/{executable.name}"
    script = executable.read_bytes()

    script_info = zipfile.ZipInfo(script_name, date_time=ZIP_EPOCH)
    script_info.external_attr = EXECUTABLE_FILE_ATTR
    script_info.compress_type = zipfile.ZIP_DEFLATED

    metadata_name = f"{dist_info}/METADATA"
    record = next(data for info, data in entries if info.filename == record_name).decode()
    partial = wheel_path.with_name(wheel_path.name + ".partial")
    with zipfile.ZipFile(partial, "w") as wheel:
        for info, data in entries:
            if info.filename == record_name:
                continue
            if info.filename == metadata_name:
                data = with_changelog(data)
                record = with_record_line(record, record_name, metadata_name, data)
            wheel.writestr(info, data)
        wheel.writestr(script_info, script)
        record_info = next(info for info, _ in entries if info.filename == record_name)
        wheel.writestr(record_info, with_record_line(record, record_name, script_name, script))
    os.replace(partial, wheel_path)


def with_changelog(metadata: bytes) -> bytes:
    """METADATA whose long description (the README) ends with CHANGELOG.md, as PyPI shows it.

    The project has no URL of its own to put a `Changelog` Project-URL on, and the README's
    relative link to CHANGELOG.md does not resolve on an index; the text itself does."""
    changelog = WORKSPACE / "CHANGELOG.md"
    if b"\n\n" not in metadata or not changelog.is_file():
        return metadata
    return metadata.rstrip(b"\n") + b"\n\n" + changelog.read_bytes()


def with_record_line(record: str, record_name: str, name: str, data: bytes) -> str:
    """RECORD with a line for `name` (PEP 376: urlsafe base64 sha256, no padding), kept before RECORD's own."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    kept = (record_name, name)
    lines = [line for line in record.splitlines() if line and line.split(",", 1)[0] not in kept]
    return "\n".join([*lines, f"{name},sha256={digest},{len(data)}", f"{record_name},,"]) + "\n"


if __name__ == "__main__":
    # `python build-backend/aiocop_build.py WHEEL...`: adds the executable to wheels built by
    # `maturin build` itself, as the Makefile's cross-builds for 3.14 and 3.15 are (PyO3 builds
    # them for an interpreter that cannot run here, which pip's route through this backend needs).
    if len(sys.argv) < 2:
        sys.exit("usage: python build-backend/aiocop_build.py WHEEL...")
    analyzer = build_analyzer()
    for wheel in sys.argv[1:]:
        finish_wheel(Path(wheel), analyzer)
