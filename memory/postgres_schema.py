"""The PostgreSQL layout: the tables of the `session_memory` schema (a row per session, a row per
turn, as the SQLite file keeps them), the functions that save and delete in one statement, and
the versioned creation and migration the server runs on start."""

from __future__ import annotations

import contextlib

import psycopg
from psycopg.rows import TupleRow

from memory.errors import StoreError

SCHEMA = "session_memory"
# The layout this server writes; `schema_version` holds the one a database has.
LAYOUT_VERSION = 1
# Taken by every server creating or migrating the layout: two servers starting at once do it one
# after the other. Any constant of this program's own.
_LAYOUT_LOCK = 0x5E55_1011

# Each step brings the layout from the version before it to its own; all of one start's steps
# run in one transaction, so a migration that is interrupted leaves the previous layout whole.
LAYOUT_STEPS: dict[int, str] = {
    1: """
-- Keys and ids compare byte by byte (COLLATE "C"), whatever the database's locale: the order of a
-- list does not depend on it, and comparing them costs less.
CREATE TABLE session_memory.conversations (
    key text COLLATE "C" PRIMARY KEY,
    -- The key space (prefix and namespace) and id: what lists a client's sessions.
    space text COLLATE "C",
    session_id text COLLATE "C",
    expires_at bigint NOT NULL,
    turn_count integer NOT NULL,
    -- The session's size as the JSON array the Redis backends store, for the size limit.
    stored_bytes bigint NOT NULL,
    -- The position the next turn gets: positions grow for good, even when old turns are dropped.
    next_seq bigint NOT NULL,
    updated_at bigint,
    title text,
    dropped bigint NOT NULL DEFAULT 0
);
CREATE INDEX conversations_expires_at ON session_memory.conversations (expires_at);
CREATE INDEX conversations_by_last_save
    ON session_memory.conversations (space, updated_at DESC, session_id DESC);

CREATE TABLE session_memory.turns (
    key text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    role text NOT NULL,
    -- bytea, not text: a message may hold U+0000, which PostgreSQL's text cannot.
    content bytea NOT NULL,
    timestamp bigint NOT NULL,
    -- false for a turn imported from another layout: as in the SQLite file, a retry is never
    -- matched against it.
    comparable boolean NOT NULL,
    -- bytea for the same reason: an id read from elsewhere (an import) may hold U+0000.
    id bytea,
    -- The turn's JSON.stringify text in UTF-8 bytes: what dropping it frees.
    bytes integer NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE INDEX turns_by_timestamp ON session_memory.turns (key, timestamp);
CREATE INDEX turns_by_id ON session_memory.turns (key, id) WHERE id IS NOT NULL;

-- Values that are not a JSON array of turns (imported as they were), never appended to.
CREATE TABLE session_memory.unreadable_sessions (
    key text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX unreadable_sessions_expires_at ON session_memory.unreadable_sessions (expires_at);

-- The time of a session's last delete, kept a while so that a save that began before it does
-- not create the session again.
CREATE TABLE session_memory.deleted_sessions (
    key text COLLATE "C" PRIMARY KEY,
    deleted_at bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX deleted_sessions_expires_at ON session_memory.deleted_sessions (expires_at);

CREATE TABLE session_memory.secrets (
    name text PRIMARY KEY,
    value text NOT NULL
);

-- A save of one or more turns: the whole of it in one statement, under the session's lock.
-- Mirrors SQLiteStore._append_rows; the turns come as parallel arrays. `fixed_bytes` is each
-- turn's JSON text length in bytes without its timestamp's digits.
CREATE FUNCTION session_memory.append_turns(
    p_key text, p_space text, p_session_id text, p_now bigint, p_started_at bigint,
    p_title text, p_expires_at bigint, p_max_bytes bigint, p_drop boolean,
    p_roles text[], p_contents bytea[], p_stamps bigint[], p_keep boolean[], p_ids bytea[],
    p_fixed_bytes integer[],
    OUT outcome text, OUT which integer, OUT created boolean, OUT stamps bigint[],
    OUT states integer[], OUT dropped bigint
) LANGUAGE plpgsql AS $$
DECLARE
    v_expires bigint;
    v_count bigint := 0;
    v_size bigint := 2;
    v_next bigint := 0;
    v_live boolean := false;
    v_deleted bigint;
    v_found_by_id integer := 0;
    v_added integer[] := '{}';
    v_added_stamps bigint[] := '{}';
    v_stamp bigint;
    v_seq bigint;
    v_found bigint;
    v_role text;
    v_content bytea;
    v_new boolean;
    v_state integer;
    v_excess bigint;
    v_freed bigint;
    v_last bigint;
    v_n integer := cardinality(p_roles);
    i integer;
    j integer;
BEGIN
    which := -1;
    created := false;
    dropped := 0;
    stamps := '{}';
    states := '{}';
    -- Writers of one session take turns; a session not yet created has no row to lock.
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 0));
    SELECT expires_at INTO v_expires FROM session_memory.unreadable_sessions WHERE key = p_key;
    IF FOUND THEN
        IF v_expires > p_now THEN
            outcome := 'not_a_session';
            RETURN;
        END IF;
        DELETE FROM session_memory.unreadable_sessions WHERE key = p_key;
    END IF;
    SELECT c.turn_count, c.stored_bytes, c.next_seq, c.expires_at INTO v_count, v_size, v_next, v_expires
        FROM session_memory.conversations c WHERE c.key = p_key FOR UPDATE;
    IF FOUND THEN
        IF v_expires <= p_now THEN
            DELETE FROM session_memory.conversations WHERE key = p_key;
            DELETE FROM session_memory.turns WHERE key = p_key;
            v_count := 0; v_size := 2; v_next := 0;
        ELSE
            v_live := true;
        END IF;
    ELSE
        v_count := 0; v_size := 2; v_next := 0;
    END IF;
    SELECT deleted_at INTO v_deleted FROM session_memory.deleted_sessions
        WHERE key = p_key AND expires_at > p_now;
    IF FOUND AND p_started_at < v_deleted THEN
        outcome := 'deleted';
        RETURN;
    END IF;
    FOR i IN 1 .. v_n LOOP
        v_stamp := p_stamps[i];
        v_new := false;
        v_state := 0;
        SELECT t.seq, t.timestamp, t.role, t.content INTO v_seq, v_found, v_role, v_content
            FROM session_memory.turns t WHERE t.key = p_key AND t.id = p_ids[i] LIMIT 1;
        IF FOUND THEN
            -- Stored by an earlier attempt of this save.
            IF v_role <> p_roles[i] OR v_content <> p_contents[i] THEN
                outcome := 'id_taken';
                which := i - 1;
                RETURN;
            END IF;
            v_stamp := v_found;
            v_state := CASE WHEN v_seq = 0 THEN 2 ELSE 0 END;
            v_found_by_id := v_found_by_id + 1;
        ELSIF p_keep[i] THEN
            -- The caller's timestamp: an equal stored turn (or an equal one earlier in this
            -- save) is this one.
            SELECT t.seq INTO v_seq FROM session_memory.turns t WHERE t.key = p_key
                AND t.timestamp = v_stamp AND t.role = p_roles[i] AND t.content = p_contents[i]
                AND t.comparable LIMIT 1;
            v_new := NOT FOUND;
            IF FOUND THEN
                v_state := CASE WHEN v_seq = 0 THEN 2 ELSE 0 END;
            ELSE
                FOR j IN 1 .. cardinality(v_added) LOOP
                    IF v_added_stamps[j] = v_stamp AND p_roles[v_added[j]] = p_roles[i]
                            AND p_contents[v_added[j]] = p_contents[i] THEN
                        v_new := false;
                        EXIT;
                    END IF;
                END LOOP;
            END IF;
        ELSE
            -- The server's clock: an equal turn at that time is another message; move past it.
            v_new := true;
            LOOP
                EXIT WHEN NOT EXISTS (
                    SELECT 1 FROM session_memory.turns t WHERE t.key = p_key AND t.timestamp = v_stamp
                        AND t.role = p_roles[i] AND t.content = p_contents[i] AND t.comparable
                ) AND NOT EXISTS (
                    SELECT 1 FROM generate_subscripts(v_added, 1) AS k
                    WHERE v_added_stamps[k] = v_stamp AND p_roles[v_added[k]] = p_roles[i]
                        AND p_contents[v_added[k]] = p_contents[i]
                );
                v_stamp := v_stamp + 1;
            END LOOP;
        END IF;
        IF v_new THEN
            v_size := v_size + p_fixed_bytes[i] + length(v_stamp::text)
                + CASE WHEN v_count + cardinality(v_added) > 0 THEN 1 ELSE 0 END;
            v_added := v_added || i;
            v_added_stamps := v_added_stamps || v_stamp;
        END IF;
        stamps := stamps || v_stamp;
        states := states || CASE WHEN v_new THEN 1 ELSE v_state END;
    END LOOP;
    IF v_found_by_id > 0 AND cardinality(v_added) > 0 THEN
        -- A save is stored whole or not at all: some turns found by their ids and others new
        -- means these ids were given to another save.
        outcome := 'id_taken';
        which := v_added[1] - 1;
        RETURN;
    END IF;
    IF v_size > p_max_bytes THEN
        IF NOT p_drop THEN
            outcome := 'session_full';
            RETURN;
        END IF;
        v_excess := v_size - p_max_bytes * 3 / 4;
        SELECT max(d.seq), count(*), coalesce(sum(d.bytes + 1), 0) INTO v_last, dropped, v_freed
        FROM (
            SELECT t.seq, t.bytes, coalesce(sum(t.bytes + 1) OVER (
                ORDER BY t.seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
            FROM session_memory.turns t WHERE t.key = p_key
        ) d WHERE d.before < v_excess;
        IF v_last IS NOT NULL THEN
            DELETE FROM session_memory.turns WHERE key = p_key AND seq <= v_last;
        END IF;
        v_count := v_count - dropped;
        v_size := v_size - v_freed;
    END IF;
    INSERT INTO session_memory.turns (key, seq, role, content, timestamp, comparable, id, bytes)
    SELECT p_key, v_next + a.n - 1, p_roles[a.i], p_contents[a.i], a.stamp, true, p_ids[a.i],
           p_fixed_bytes[a.i] + length(a.stamp::text)
    FROM unnest(v_added, v_added_stamps) WITH ORDINALITY AS a(i, stamp, n);
    INSERT INTO session_memory.conversations AS c (key, space, session_id, expires_at, turn_count,
        stored_bytes, next_seq, updated_at, title, dropped)
    VALUES (p_key, p_space, p_session_id, p_expires_at, v_count + cardinality(v_added), v_size,
        v_next + cardinality(v_added), p_started_at, p_title, dropped)
    ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at,
        turn_count = excluded.turn_count, stored_bytes = excluded.stored_bytes,
        next_seq = excluded.next_seq,
        updated_at = greatest(c.updated_at, excluded.updated_at),
        dropped = c.dropped + excluded.dropped;
    created := NOT v_live AND cardinality(v_added) > 0;
    outcome := 'saved';
END
$$;

-- A delete: -1 when a save that began after it has landed (nothing is deleted), else whether
-- the session existed. Mirrors SQLiteStore._delete_rows.
CREATE FUNCTION session_memory.delete_session(p_key text, p_started_at bigint, p_now bigint,
    p_marker_expires_at bigint) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_updated bigint;
    v_expires bigint;
    v_existed integer := 0;
    v_rows integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 0));
    SELECT updated_at, expires_at INTO v_updated, v_expires
        FROM session_memory.conversations WHERE key = p_key FOR UPDATE;
    IF FOUND AND v_expires > p_now AND v_updated IS NOT NULL AND v_updated > p_started_at THEN
        RETURN -1;
    END IF;
    INSERT INTO session_memory.deleted_sessions VALUES (p_key, p_now, p_marker_expires_at)
        ON CONFLICT (key) DO UPDATE SET deleted_at = excluded.deleted_at,
            expires_at = excluded.expires_at;
    DELETE FROM session_memory.conversations WHERE key = p_key AND expires_at > p_now;
    GET DIAGNOSTICS v_existed = ROW_COUNT;
    DELETE FROM session_memory.conversations WHERE key = p_key;
    DELETE FROM session_memory.turns WHERE key = p_key;
    DELETE FROM session_memory.unreadable_sessions WHERE key = p_key AND expires_at > p_now;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    DELETE FROM session_memory.unreadable_sessions WHERE key = p_key;
    RETURN CASE WHEN v_existed + v_rows > 0 THEN 1 ELSE 0 END;
END
$$;
""",
}


async def prepare(connection: psycopg.AsyncConnection[TupleRow]) -> None:
    """Create the layout, or migrate an older one, in one transaction under an advisory lock.

    A migration that is interrupted (a crash, a kill, a lost connection) is rolled back by
    PostgreSQL as a whole, so the database holds the old layout or the new one, and the next
    start migrates it again. A database of a later layout is refused.
    """
    version = await _version(connection)
    if version == LAYOUT_VERSION:
        return
    _refuse_a_later_layout(version)
    # A session lock, taken before the transaction rather than in it: a transaction that began
    # before another server's commit would not see that server's new schema in its catalog cache.
    await connection.execute("SELECT pg_advisory_lock(%s)", (_LAYOUT_LOCK,))
    try:
        async with connection.transaction():
            # Another server may have done it while this one waited for the lock.
            version = await _version(connection)
            _refuse_a_later_layout(version)
            if version == 0:
                await connection.execute("CREATE SCHEMA IF NOT EXISTS session_memory")
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS session_memory.schema_version (version integer)"
                )
                await connection.execute("INSERT INTO session_memory.schema_version VALUES (0)")
            for step in range(version + 1, LAYOUT_VERSION + 1):
                await connection.execute(LAYOUT_STEPS[step].encode())
            await connection.execute(
                "UPDATE session_memory.schema_version SET version = %s", (LAYOUT_VERSION,)
            )
    finally:
        # Released with the connection too, should this fail: a kill leaves no lock behind.
        with contextlib.suppress(psycopg.Error):
            await connection.execute("SELECT pg_advisory_unlock(%s)", (_LAYOUT_LOCK,))


async def _version(connection: psycopg.AsyncConnection[TupleRow]) -> int:
    """The layout the database holds: 0 for none."""
    cursor = await connection.execute(
        "SELECT to_regclass(%s) IS NOT NULL", ("session_memory.schema_version",)
    )
    row = await cursor.fetchone()
    if row is None or not row[0]:
        return 0
    cursor = await connection.execute("SELECT max(version) FROM session_memory.schema_version")
    row = await cursor.fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def _refuse_a_later_layout(version: int) -> None:
    if version > LAYOUT_VERSION:
        raise StoreError(
            f"the session database has layout {version}, written by a later version of this "
            f"server; this one reads layout {LAYOUT_VERSION} (upgrade it, or use another database)"
        )
