-- The one slot for the administrator made by `tongban bootstrap`. It is taken in the same
-- transaction that makes the administrator, so that of two bootstraps run at once one makes
-- its administrator and the other fails on this key, instead of both checking that there is
-- none and both making one.
CREATE TABLE first_admin (
    slot BIGINT PRIMARY KEY CHECK (slot = 1),
    username TEXT NOT NULL REFERENCES users (username),
    created_at TEXT NOT NULL
);
