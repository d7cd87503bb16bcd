-- shakesco-async ledger schema for PostgreSQL, version 6 (every statement is idempotent,
-- so the file also upgrades any older version).
-- The SDK creates and migrates this itself (PostgresLedger.open). Teams whose DBAs apply
-- migrations by hand can run this file instead, replacing "shakesco" with their schema
-- name, and open the ledger with migrate=False.

CREATE SCHEMA IF NOT EXISTS shakesco;

CREATE TABLE IF NOT EXISTS shakesco.schema_version (
    version integer NOT NULL
);

CREATE TABLE IF NOT EXISTS shakesco.entries (
    business      text        NOT NULL,  -- one-way fingerprint of the API key, never the key
    key           text        NOT NULL,  -- the idempotency key
    operation     text        NOT NULL,  -- the API path, e.g. /claim-tokens
    params        jsonb       NOT NULL,
    params_digest text        NOT NULL,
    customers     text[]      NOT NULL,
    key_source    text        NOT NULL,  -- caller | generated
    state         text        NOT NULL,  -- staged | recorded | sending | committed | failed | in_doubt | abandoned
    attempts      integer     NOT NULL DEFAULT 0,
    snapshot      jsonb,
    result        jsonb,
    error         jsonb,
    reason        text,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (business, key)
);

CREATE INDEX IF NOT EXISTS entries_by_state ON shakesco.entries (business, state, updated_at);
CREATE INDEX IF NOT EXISTS entries_by_customer ON shakesco.entries USING gin (customers);

-- version 2: reconcile workers claim entries (FOR UPDATE SKIP LOCKED) so that they split the work.
ALTER TABLE shakesco.entries ADD COLUMN IF NOT EXISTS claimed_by text;
ALTER TABLE shakesco.entries ADD COLUMN IF NOT EXISTS claimed_until timestamptz;

-- version 3: reconcile claims open entries a page at a time, oldest first; this index
-- (open entries only, so small) lets each page start where the last one ended.
CREATE INDEX IF NOT EXISTS entries_open_by_age ON shakesco.entries (business, created_at, key)
    WHERE state IN ('recorded', 'sending', 'in_doubt');

-- version 4: the open-entry check before each write reads the customer's open entries,
-- not every write the customer ever made nor every open entry of the business.
CREATE INDEX IF NOT EXISTS entries_open_by_customer ON shakesco.entries USING gin (customers) WITH (fastupdate = off)
    WHERE state IN ('sending', 'in_doubt') AND snapshot IS NOT NULL;

-- version 5: a write marked sending records how long its request may be on its way
-- (seconds after updated_at), so that a process with a shorter timeout does not judge it early;
-- a reconciler's claim names the server process of the connection that made it, and ends
-- once that process has (the reconciler was killed mid-pass), not minutes later.
ALTER TABLE shakesco.entries ADD COLUMN IF NOT EXISTS in_flight double precision;
ALTER TABLE shakesco.entries ADD COLUMN IF NOT EXISTS claimed_holder integer;

-- version 6: writes staged in the application's own transaction are open too, and the
-- sender claims them oldest first.
CREATE INDEX IF NOT EXISTS entries_open_by_age_6 ON shakesco.entries (business, created_at, key)
    WHERE state IN ('staged', 'recorded', 'sending', 'in_doubt');
DROP INDEX IF EXISTS shakesco.entries_open_by_age;

DELETE FROM shakesco.schema_version;
INSERT INTO shakesco.schema_version (version) VALUES (6);
