"""The config store's tables and the statements both SQL dialects run alike, written once.

Templates name the tables ``{meta}``, ``{state}``, ``{events}``, ``{replicas}`` and
``{replica_bots}`` (the index ``{events_at}``), the column types ``{key}`` (an id, compared
bytewise), ``{text}``, ``{json}``, ``{int}`` (64-bit), ``{time}`` and ``{bool}``, and take ``%s``
placeholders; :mod:`.postgres_schema` and :mod:`.sqlite_schema` fill them in for their dialect
and add the statements only one of them has.
"""

from __future__ import annotations

from typing import Final

TABLES: Final = ("meta", "state", "events", "replicas", "replica_bots")

SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS {meta} (id integer PRIMARY KEY CHECK (id = 1),"
    " revision {int} NOT NULL, compacted {int} NOT NULL)",
    "INSERT INTO {meta} VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS {state} (bot_id {key} PRIMARY KEY, config {json} NOT NULL,"
    " generation {int} NOT NULL, uid {text} NOT NULL, annotations {json} NOT NULL,"
    " revision {int} NOT NULL, updated_at {time} NOT NULL, deleted {bool} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {events} (revision {int} PRIMARY KEY, type {text} NOT NULL,"
    " bot_id {key} NOT NULL, config {json}, generation {int}, uid {text}, annotations {json},"
    " created_at {time} NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {events_at} ON {events} (created_at)",
    "CREATE TABLE IF NOT EXISTS {replicas} (replica_id {key} PRIMARY KEY,"
    " synced_revision {int} NOT NULL, heartbeat_at {time} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {replica_bots} (replica_id {key} NOT NULL,"
    " bot_id {key} NOT NULL, generation {int}, revision {int}, error {text},"
    " error_revision {int}, served_by {text}, reason {text}, tools {text},"
    " rollout {text}, PRIMARY KEY (replica_id, bot_id))",
)
#: Columns added to ``{replica_bots}`` after it was first released (all ``{text}``): a table
#: made before them gets them when a store opens it.
REPLICA_BOT_COLUMNS: Final = ("served_by", "reason", "tools", "rollout")

_ENTRY: Final = "bot_id, config, generation, uid, annotations, revision, updated_at"
GET: Final = f"SELECT {_ENTRY} FROM {{state}} WHERE bot_id = %s AND NOT deleted"
LIST: Final = f"SELECT {_ENTRY} FROM {{state}} WHERE NOT deleted ORDER BY bot_id"
REVISION: Final = "SELECT revision, compacted FROM {meta} WHERE id = 1"
# The counter and the live entry of one bot, read inside the writer's transaction.
LIVE: Final = (
    "SELECT m.revision, s.bot_id, s.config, s.generation, s.uid, s.annotations, s.revision,"
    " s.updated_at FROM {meta} AS m LEFT JOIN {state} AS s ON s.bot_id = %s AND NOT s.deleted"
    " WHERE m.id = 1"
)
COMPACT: Final = (
    "DELETE FROM {events} WHERE revision <= %s",
    "DELETE FROM {state} WHERE deleted AND revision <= %s",
    "UPDATE {meta} SET compacted = %s WHERE id = 1",
)
CLEAR_BOTS: Final = "DELETE FROM {replica_bots} WHERE replica_id = %s"
BOT: Final = (
    "INSERT INTO {replica_bots} (replica_id, bot_id, generation, revision, error,"
    " error_revision, served_by, reason, tools, rollout)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
