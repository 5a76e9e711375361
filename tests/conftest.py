"""Every test: the web page of a daemon a test starts listens on a free port, not 5006."""

from __future__ import annotations

import os

os.environ.setdefault("PAIRWATCH_WEB__PORT", "0")
