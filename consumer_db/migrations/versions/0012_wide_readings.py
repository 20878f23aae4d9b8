"""PostgreSQL: one row per reading, partitioned by UTC day; readings_fact becomes a view of it.

readings_fact kept 14 rows per reading, each with two b-tree entries (2,797 bytes per stored reading with
the rollups, docs/consumer_db.md "Stored form"). ``readings`` keeps one row per reading: ``amps[N]`` is
axis N's current (NULL: OK null, or no row of that axis), ``axes`` has bit N set where the long form had a
row of axis N, so the view ``readings_fact`` gives back exactly the rows that were stored, NULLs ("OK
null") included. Its only index is the primary key (robot_id, ts).

``readings`` is partitioned by range of ``ts``, one partition per UTC day (``readings_pYYYYMMDD``), made by
``ensure_readings_partitions(from, until)`` and dropped by ``drop_readings_partitions(before)``. Both run as
the schema's owner (SECURITY DEFINER), so the services' role, which has no DDL rights, can call them; the
drop refuses a day whose rows are not all folded into the rollup.

Every row moves: the days of the stored rows get their partitions, then each reading's rows are gathered
into its one row. The cat_ views (0002) are made again on the view. An INSTEAD OF INSERT trigger keeps
``INSERT INTO readings_fact`` working (psql, fixtures): it merges the row into its reading's row.

SQLite keeps the long table (no arrays, no partitions): nothing changes there.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

import importlib

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

CAT_VIEWS = importlib.import_module("consumer_db.migrations.versions.0002_views")

CREATE_READINGS = """
CREATE TABLE readings (
    robot_id varchar(64) NOT NULL,
    ts timestamptz NOT NULL,
    axes bigint NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    amps double precision[] NOT NULL,
    CONSTRAINT pk_readings PRIMARY KEY (robot_id, ts),
    CONSTRAINT ck_readings_amps_physical CHECK (-1e6 <= ALL (amps) AND 1e6 >= ALL (amps))
) PARTITION BY RANGE (ts)
"""
COMMENTS = [
    "COMMENT ON COLUMN readings.axes IS 'bit N set: the reading has a row of axis N in readings_fact'",
    "COMMENT ON COLUMN readings.amps IS 'amps[N] = axis N; NULL = OK null (the axis has no load channel)'",
]

# One UTC day per partition; made ahead of time by the services (consumer_db.partitions) and on demand by
# the writers for older data. Two writers that need the same new day: the second one's CREATE waits for the
# first one's commit, then fails, and finds the day made.
ENSURE = """
CREATE FUNCTION ensure_readings_partitions(low timestamptz, high timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    day date := (low AT TIME ZONE 'UTC')::date;
    made integer := 0;
    name text;
BEGIN
    WHILE day <= (high AT TIME ZONE 'UTC')::date LOOP
        name := 'readings_p' || to_char(day, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE TABLE %I PARTITION OF readings FOR VALUES FROM (%L) TO (%L)',
                               name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
                made := made + 1;
            EXCEPTION WHEN duplicate_table OR unique_violation THEN
                NULL;  -- another writer made it meanwhile (its CREATE waited for that one's commit)
            END;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN made;
END $$
"""

# A day is dropped only when every robot with rows in it has its rollup folded past the day's end
# (rollup_progress): what the rollup readers and data health take from then on.
DROP = """
CREATE FUNCTION drop_readings_partitions(before timestamptz) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    part record;
    upper_bound timestamptz;
    unfolded boolean;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'readings'::regclass AND c.relname ~ '^readings_p[0-9]{8}$' ORDER BY c.relname
    LOOP
        upper_bound := (to_date(substr(part.relname, 11), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC';
        CONTINUE WHEN upper_bound > before;
        EXECUTE format(
            'SELECT EXISTS (SELECT 1 FROM axes_dim a WHERE EXISTS (SELECT 1 FROM %I r WHERE r.robot_id = a.robot_id)'
            ' AND NOT EXISTS (SELECT 1 FROM rollup_progress p WHERE p.robot_id = a.robot_id AND p.folded_until >= %L))',
            part.relname, upper_bound) INTO unfolded;
        IF unfolded THEN
            RAISE WARNING 'partition % kept: rows of it are not folded into the rollup yet', part.relname;
            CONTINUE;
        END IF;
        EXECUTE format('DROP TABLE %I', part.relname);
        RETURN NEXT part.relname;
    END LOOP;
END $$
"""

VIEW = """
CREATE VIEW readings_fact AS
SELECT r.robot_id, CAST(u.axis_id AS smallint) AS axis_id, r.ts, u.amps, r.ingested_at
FROM readings r CROSS JOIN LATERAL unnest(r.amps) WITH ORDINALITY AS u(amps, axis_id)
WHERE (r.axes >> CAST(u.axis_id AS integer)) & 1 = 1
"""

# A row of the long form merged into its reading's row; a second row of the same axis is a duplicate key,
# as it was in the table.
INSERT_TRIGGER = """
CREATE FUNCTION readings_fact_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    one double precision[] := array_fill(NULL::double precision, ARRAY[NEW.axis_id]);
BEGIN
    one[NEW.axis_id] := NEW.amps;
    PERFORM ensure_readings_partitions(NEW.ts, NEW.ts);
    INSERT INTO readings AS r (robot_id, ts, axes, amps, ingested_at)
    VALUES (NEW.robot_id, NEW.ts, CAST(1 AS bigint) << NEW.axis_id, one, coalesce(NEW.ingested_at, CURRENT_TIMESTAMP))
    ON CONFLICT (robot_id, ts) DO UPDATE SET axes = r.axes | EXCLUDED.axes, amps[NEW.axis_id] = NEW.amps
    WHERE (r.axes >> NEW.axis_id) & 1 = 0;
    IF NOT FOUND THEN
        RAISE unique_violation USING MESSAGE = format(
            'duplicate key value: readings_fact (robot_id, axis_id, ts)=(%s, %s, %s) already exists',
            NEW.robot_id, NEW.axis_id, NEW.ts);
    END IF;
    RETURN NEW;
END $$
"""

# The rows of each reading gathered; array_agg in axis order is amps[N] = axis N when the axes are 1..n
# (every robot of the default config), otherwise each value is put at its axis.
MOVE = """
INSERT INTO readings (robot_id, ts, axes, ingested_at, amps)
SELECT robot_id, ts, axes, ingested_at,
       CASE WHEN n = top THEN vals
            ELSE ARRAY(SELECT v FROM generate_series(1, top) g(i) LEFT JOIN unnest(ids, vals) u(a, v) ON u.a = g.i
                       ORDER BY g.i) END
FROM (
    SELECT robot_id, ts, bit_or(CAST(1 AS bigint) << axis_id) AS axes, min(ingested_at) AS ingested_at,
           count(*) AS n, max(axis_id) AS top,
           array_agg(axis_id ORDER BY axis_id) AS ids, array_agg(amps ORDER BY axis_id) AS vals
    FROM readings_fact_long GROUP BY robot_id, ts
) gathered
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in CAT_VIEWS.views("postgresql"):
        op.execute(f"DROP VIEW {name}")
    op.execute("ALTER TABLE readings_fact RENAME TO readings_fact_long")
    op.execute(CREATE_READINGS)
    for comment in COMMENTS:
        op.execute(comment)
    op.execute(ENSURE)
    op.execute(DROP)
    # the days with rows only (not every day between the first and the last)
    op.execute(
        "SELECT ensure_readings_partitions(day, day) FROM "
        "(SELECT DISTINCT date_trunc('day', ts, 'UTC') AS day FROM readings_fact_long) days"
    )
    op.execute(MOVE)
    op.execute("DROP TABLE readings_fact_long")
    op.execute(VIEW)
    op.execute(INSERT_TRIGGER)
    op.execute(
        "CREATE TRIGGER readings_fact_insert INSTEAD OF INSERT ON readings_fact "
        "FOR EACH ROW EXECUTE FUNCTION readings_fact_insert()"
    )
    for name, body in CAT_VIEWS.views("postgresql").items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in CAT_VIEWS.views("postgresql"):
        op.execute(f"DROP VIEW {name}")
    op.execute("CREATE TABLE readings_fact_long AS SELECT robot_id, axis_id, ts, amps, ingested_at FROM readings_fact")
    op.execute("DROP VIEW readings_fact")
    op.execute("DROP FUNCTION readings_fact_insert()")
    op.execute("DROP TABLE readings")
    op.execute("DROP FUNCTION ensure_readings_partitions(timestamptz, timestamptz)")
    op.execute("DROP FUNCTION drop_readings_partitions(timestamptz)")
    op.execute("ALTER TABLE readings_fact_long RENAME TO readings_fact")
    for statement in (
        "ALTER TABLE readings_fact ALTER COLUMN robot_id SET NOT NULL",
        "ALTER TABLE readings_fact ALTER COLUMN axis_id SET NOT NULL",
        "ALTER TABLE readings_fact ALTER COLUMN ts SET NOT NULL",
        "ALTER TABLE readings_fact ALTER COLUMN ingested_at SET NOT NULL",
        "ALTER TABLE readings_fact ALTER COLUMN ingested_at SET DEFAULT CURRENT_TIMESTAMP",
        "ALTER TABLE readings_fact ADD CONSTRAINT pk_readings_fact PRIMARY KEY (robot_id, axis_id, ts)",
        "CREATE INDEX ix_readings_fact_robot_id_ts ON readings_fact (robot_id, ts) INCLUDE (axis_id, amps)",
        "ALTER TABLE readings_fact ADD CONSTRAINT ck_readings_fact_amps_physical CHECK (amps BETWEEN -1e6 AND 1e6)",
    ):
        op.execute(statement)
    for name, body in CAT_VIEWS.views("postgresql").items():
        op.execute(f"CREATE VIEW {name} AS {body}")
