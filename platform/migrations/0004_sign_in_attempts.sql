-- Attempts to sign in, per lower-cased username, known or not. They are kept in the store,
-- not in each gateway's memory, so that every gateway on one store counts the same guesses,
-- and each is counted before its password is checked, so that guesses sent all at once are
-- bounded as well as guesses sent one after another. A successful sign-in deletes the row;
-- rows older than the lock are swept.
CREATE TABLE sign_in_attempts (
    username TEXT PRIMARY KEY,
    attempts BIGINT NOT NULL,
    last_attempt TEXT NOT NULL
);
CREATE INDEX sign_in_attempts_last_attempt ON sign_in_attempts (last_attempt);
