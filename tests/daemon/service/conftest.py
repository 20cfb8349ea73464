"""Every in-process line test here runs on SQLite and on PostgreSQL (skipped without a server)."""

import pytest

from ..inprocess import InProcessLine


@pytest.fixture(autouse=True)
def _on_each_store(store_url, monkeypatch):
    monkeypatch.setattr(InProcessLine, "store_url", store_url)
