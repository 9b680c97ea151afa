"""Run this Python as the kit would run on win32: see ../shim.py."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import shim

shim.install("win32")
