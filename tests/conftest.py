"""Fixtures shared by every test package: real services, started here and stopped after."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.e2e import embedded_services
from tests.prometheus import PrometheusTools, install_prometheus


@pytest.fixture(scope="module")
def services() -> Iterator[tuple[str, str]]:
    """(Kafka bootstrap, Redis URL): an embedded broker with the product's topics and a Valkey server."""
    yield from embedded_services()


@pytest.fixture(scope="session")
def prometheus_tools() -> PrometheusTools:
    """Paths of ``prometheus`` and ``promtool``; installs the Debian package when root.

    Skips (with the reason) only where it truly cannot be installed: not root, or no apt-get.
    """
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        why = install_prometheus()
        if why is not None and os.geteuid() == 0 and shutil.which("apt-get"):
            pytest.fail(why)  # we could install and it broke: that is a failure, not a skip
        if why is not None:
            pytest.skip(why)
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not (prometheus and promtool):
        pytest.fail("the prometheus package installed, but `prometheus`/`promtool` are not on PATH")
    return PrometheusTools(prometheus, promtool)
