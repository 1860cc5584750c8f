"""Opening the store: URLs checked and named, unreachable databases refused with the reason, the schema
migrated to what schema.py declares on both engines, once, by one process at a time."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from smallguard.server.domain.errors import StoreError
from smallguard.server.store import open_store
from smallguard.server.store.engine import MIGRATIONS, SCHEMA_REVISION, default_store_url, migrate, open_engine
from smallguard.server.store.schema import metadata
from tests.conftest import free_port


@pytest.mark.parametrize(("url", "message"), [
    ("not a url", "--store 'an unparseable URL' is not a database URL; expected sqlite:///PATH/TO/FILE or "
                  "postgresql://"),
    ("mysql://u:secret@h/db", "--store 'mysql://u:***@h/db': 'mysql' databases are not supported; expected"),
    ("sqlite+aiosqlite:///x.db", "the SQLite driver 'aiosqlite' is not supported"),
])
def test_a_url_that_is_not_a_supported_store_is_refused_naming_it(url: str, message: str) -> None:
    with pytest.raises(StoreError) as caught:
        open_store(url)
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


def test_an_unreachable_postgresql_is_refused_with_the_reason_and_no_password() -> None:
    with pytest.raises(StoreError) as caught:
        open_store(f"postgresql://smallguard:hunter2@127.0.0.1:{free_port()}/nothing")
    message = str(caught.value)
    assert message.startswith("cannot reach the store postgresql+psycopg://smallguard:***@127.0.0.1:")
    assert "refused" in message.lower() and "hunter2" not in message


def test_a_sqlite_folder_that_cannot_be_made_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot create the folder of the store"):
        open_store(f"sqlite:///{tmp_path / 'file' / 'sub' / 'store.sqlite3'}")


def test_the_default_is_a_sqlite_file_in_the_state_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_store_url() == f"sqlite:///{tmp_path}/smallguard/store.sqlite3"
    open_store(default_store_url()).close()
    assert (tmp_path / "smallguard" / "store.sqlite3").is_file()


def test_migrations_build_exactly_the_declared_schema_on_both_engines(store_url: str) -> None:
    store = open_store(store_url)
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
        revision = MigrationContext.configure(connection).get_current_revision()
        indexes = {i["name"] for t in ("decisions", "decision_batches", "batch_items", "feedback", "review_cases")
                   for i in sa.inspect(connection).get_indexes(t)}
    store.close()
    assert differences == []
    assert revision == "0003"
    assert {"ix_decisions_request_id", "ix_decisions_at", "ix_decision_batches_at", "ix_batch_items_request_id",
            "ix_feedback_tally", "ix_review_cases_queue", "ix_review_cases_model",
            "ix_review_cases_request_id"} <= indexes


def test_the_revision_the_server_expects_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_migrating_again_changes_nothing_and_processes_take_turns(store_url: str) -> None:
    engines = [open_engine(store_url) for _ in range(4)]
    errors: list[BaseException] = []

    def run(engine: sa.Engine) -> None:
        try:
            migrate(engine)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert errors == []
    engine = open_engine(store_url)
    assert migrate(engine) == "0003"
    engine.dispose()


def test_a_store_migrated_by_a_newer_smallguard_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    open_store(url).close()
    with sqlite3.connect(tmp_path / "store.sqlite3") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(StoreError, match="is at schema revision '0099', which this smallguard does not know"):
        open_store(url)
