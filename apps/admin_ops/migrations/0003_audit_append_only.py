"""The database refuses to change audit events: UPDATE on every backend, DELETE on PostgreSQL.

(SQLite keeps DELETE possible because Django's test flush empties tables with DELETE; on
PostgreSQL the flush uses TRUNCATE, which row triggers do not see.)
"""

from django.db import migrations

TABLE = "admin_ops_auditevent"

POSTGRES_UP = [
    """CREATE OR REPLACE FUNCTION admin_ops_audit_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'audit events are append-only';
    END;
    $$ LANGUAGE plpgsql""",
    f"""CREATE TRIGGER admin_ops_audit_no_update BEFORE UPDATE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION admin_ops_audit_append_only()""",
    f"""CREATE TRIGGER admin_ops_audit_no_delete BEFORE DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION admin_ops_audit_append_only()""",
]
POSTGRES_DOWN = [
    f"DROP TRIGGER IF EXISTS admin_ops_audit_no_update ON {TABLE}",
    f"DROP TRIGGER IF EXISTS admin_ops_audit_no_delete ON {TABLE}",
    "DROP FUNCTION IF EXISTS admin_ops_audit_append_only()",
]
SQLITE_UP = [
    f"""CREATE TRIGGER admin_ops_audit_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
]
SQLITE_DOWN = ["DROP TRIGGER IF EXISTS admin_ops_audit_no_update"]
STATEMENTS = {"postgresql": (POSTGRES_UP, POSTGRES_DOWN), "sqlite": (SQLITE_UP, SQLITE_DOWN)}


def forwards(apps, schema_editor):
    for statement in STATEMENTS.get(schema_editor.connection.vendor, ([], []))[0]:
        schema_editor.execute(statement, params=None)


def backwards(apps, schema_editor):
    for statement in STATEMENTS.get(schema_editor.connection.vendor, ([], []))[1]:
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("admin_ops", "0002_change_requests_audit_reports")]

    operations = [migrations.RunPython(forwards, backwards)]
