"""The installed distribution's version, read from package metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("shakesco-async")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.0.0"
