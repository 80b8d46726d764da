"""Where aiocop's own files are: frames from files under this directory are never shown, never blamed."""

import os

AIOCOP_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
