-- Federation: the last good copy of each peer gateway's catalog, kept across restarts so
-- that a peer that cannot be reached leaves its resources listed, with their age.

CREATE TABLE remote_catalogs (
    peer TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    -- The peer's entity tag for the document, sent back to ask whether it changed.
    etag TEXT,
    -- The document as accepted (tongban_platform::federation::CatalogDocument, JSON).
    document TEXT,
    fetched_at TEXT,
    -- When the peer last confirmed the copy current.
    checked_at TEXT,
    failed_at TEXT,
    error TEXT
);
