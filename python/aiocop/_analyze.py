"""The ``aiocop-analyze`` console script: the Rust analyzer, linked into the native module.

The same program is built standalone by ``cargo install --path analyzer``;
this entry point lets ``pip install aiocop`` provide it too.
"""

import sys

from aiocop import _native


def main() -> None:
    sys.exit(_native.analyze_main(["aiocop-analyze", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
