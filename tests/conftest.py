"""Every test: the web page of a daemon a test starts listens on a free port, not 5006.

The whole run: no secret of ``support.secrets`` may show in any log output.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PAIRWATCH_WEB__PORT", "0")


def pytest_configure(config: pytest.Config) -> None:
    """Fail the run if any secret of ``support.secrets`` shows in its log output."""
    from support.secrets import SecretGuard

    config.pluginmanager.register(SecretGuard(), "pairwatch-secret-guard")
