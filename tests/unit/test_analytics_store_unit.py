"""The migration runner's backfill of materialized views: every view with a TO table gets its SELECT replayed once."""

from __future__ import annotations

from libs.common.analytics_store import MIGRATIONS_DIR, _split_statements, backfill_statement


def test_a_view_with_a_target_table_is_backfilled_with_its_own_select() -> None:
    view = ("CREATE MATERIALIZED VIEW IF NOT EXISTS db.counts_mv TO db.counts AS\n"
            "SELECT toStartOfMinute(occurred_at) AS minute, count() AS n\nFROM db.events\nGROUP BY minute")
    assert backfill_statement(view) == (
        "INSERT INTO db.counts\nSELECT toStartOfMinute(occurred_at) AS minute, count() AS n\nFROM db.events\n"
        "GROUP BY minute"
    )


def test_other_statements_are_not_backfilled() -> None:
    assert backfill_statement("CREATE TABLE IF NOT EXISTS db.t (x UInt8) ENGINE = Memory") is None
    assert backfill_statement("CREATE MATERIALIZED VIEW db.v ENGINE = Memory AS SELECT 1") is None  # no TO table
    assert backfill_statement("DELETE FROM db.events WHERE photo_id = 'x'") is None


def test_every_view_in_the_migrations_gets_a_backfill_and_no_file_repeats_one() -> None:
    views = backfills = 0
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        for statement in _split_statements(path.read_text()):
            if statement.upper().startswith("CREATE MATERIALIZED VIEW"):
                views += 1
                backfills += backfill_statement(statement) is not None
            assert not statement.upper().startswith("INSERT INTO"), f"{path.name}: the runner backfills views itself"
    assert views == backfills > 0
