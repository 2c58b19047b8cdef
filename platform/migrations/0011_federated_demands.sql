-- Federation: demands that cross gateways, the outbox that hands their steps to the peer, the
-- inbox that applies a peer's steps exactly once and in order, and the home gateway's mirror of
-- the grants the supplier's gateway compiled.

-- The peer gateway on the other side of a demand that crosses gateways (NULL within one), and
-- which side this gateway is: 'home' (the demanding department's) or 'supplier'.
ALTER TABLE demands ADD COLUMN peer TEXT;
ALTER TABLE demands ADD COLUMN side TEXT;

-- Departments of other provinces named by demands that crossed from their gateways, as their
-- home gateway stated them. A local department of the same code always wins.
CREATE TABLE remote_departments (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    region TEXT NOT NULL,
    peer TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One counter per peer, taken by row lock in the transaction that writes a message, so the
-- messages to one peer are numbered without gaps in the order their changes committed.
CREATE TABLE outbox_heads (
    peer TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

-- Messages for peers, written in the same transaction as the change they carry, delivered in
-- sequence order and kept once delivered (the exchange's history on this side).
CREATE TABLE outbox (
    peer TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    -- tongban_platform::federation::PeerMessage as JSON.
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    delivered_at TEXT,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    -- Set when the peer refused the message for good (its problem's detail); it is not retried.
    refused TEXT,
    PRIMARY KEY (peer, seq)
);

CREATE INDEX outbox_pending ON outbox (peer, delivered_at, seq);

-- The last message applied from each peer: a message at or below it is a repeat and changes
-- nothing; only the next one in sequence is applied.
CREATE TABLE inbox (
    peer TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);

-- The home gateway's read-only copy of grants that peers compiled for its departments. The
-- supplier's gateway enforces the grant; the copy routes calls, refuses early and shows them.
CREATE TABLE grant_mirrors (
    grant_id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    demand_id TEXT NOT NULL,
    consumer_department TEXT NOT NULL,
    -- The remote resource id (region:code).
    resource_id TEXT NOT NULL,
    status TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    version BIGINT NOT NULL,
    -- tongban_policy::grant::Grant as JSON, as the supplier's gateway sent it.
    body TEXT NOT NULL,
    received_at TEXT NOT NULL
);

CREATE INDEX grant_mirrors_by_consumer ON grant_mirrors (consumer_department, status);
