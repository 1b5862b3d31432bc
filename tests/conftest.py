"""Shared fixtures: real servers started from packages (see tests/servers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import FhirServer, RedisServer, fhir_server, redis_server


@pytest.fixture(scope="session")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    """A FHIR R4 server (sekmet-fhir + HAPI strictness), no auth, shared by the session."""
    with fhir_server(tmp_path_factory.mktemp("fhir")) as server:
        yield server


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server on a free loopback port."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server
