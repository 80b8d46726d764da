"""The structure check (.ci/check_structure.py) finds import circles, says where they are, and passes the repository."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / ".ci" / "check_structure.py"


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_rust_circle_through_a_call_and_a_use_fails_and_is_printed(tmp_path):
    src = write_tree(
        tmp_path / "src",
        {
            "lib.rs": "mod monitor;\nmod recording;\nmod what_ran;\n",
            "monitor.rs": "use crate::recording;\npub fn run() { recording::record(); }\n",
            "recording/mod.rs": "mod buffer;\npub use buffer::record;\n",
            "recording/buffer.rs": "pub fn record() { crate::what_ran::describe(); }\n",
            "what_ran.rs": "// crate::monitor in a comment: not a use\npub fn describe() { crate::monitor::run(); }\n",
        },
    )
    result = run_check("--rust", str(src))
    assert result.returncode == 1
    assert "import circle: monitor -> recording -> recording::buffer -> what_ran -> monitor" in result.stderr


def test_rust_modules_that_use_each_other_one_way_pass(tmp_path):
    src = write_tree(
        tmp_path / "src",
        {
            "lib.rs": "mod a;\nmod b;\nfn f() { a::x(); b::y(); }\n",
            "a.rs": "use crate::b::{self, y};\npub fn x() { y(); }\n",
            "b.rs": "pub fn y() {}\n\n#[cfg(test)]\nmod tests {\n    use crate::a::x;\n}\n",
        },
    )
    result = run_check("--rust", str(src))
    assert result.returncode == 0, result.stderr


def test_a_python_circle_at_module_level_fails_but_one_inside_a_function_does_not(tmp_path):
    package = write_tree(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/wiring.py": "from pkg.core import sampler\n",
            "core/sampler.py": "from . import wiring\n",
            "core/lazy.py": "def f():\n    from pkg.core import later\n",
            "core/later.py": "from pkg.core.lazy import f\n",
        },
    )
    result = run_check("--python", str(package))
    assert result.returncode == 1
    assert "import circle: pkg.core.sampler -> pkg.core.wiring -> pkg.core.sampler" in result.stderr
    assert "lazy" not in result.stderr


def test_a_directory_that_does_not_exist_is_a_clear_error(tmp_path):
    result = run_check("--rust", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "missing' is not a directory" in result.stderr


def test_the_repository_has_no_import_circle_beyond_the_allowed_ones():
    result = run_check()
    assert result.returncode == 0, result.stderr
