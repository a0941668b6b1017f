"""The jobs store on both databases (`vector_store`: with the vector table of library search):
SQLite in a temporary file, and a real PostgreSQL server
(tests/support/postgres.py) started once for the module, a fresh database per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from deploy.config.settings import JobsSettings, StoreSettings
from deploy.jobs.store import Store, open_store
from tests.support.postgres import PostgresServer

_names = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    name = f"test_{next(_names)}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(StoreSettings(url=store_url), JobsSettings(data_dir=tmp_path))
    yield opened
    opened.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def vector_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = open_store(StoreSettings(url=url), JobsSettings(data_dir=tmp_path), vectors=True)
    yield store
    store.close()
