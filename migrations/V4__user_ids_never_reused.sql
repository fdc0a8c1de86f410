-- SQLite gives a new row the largest id plus one, so deleting the newest user
-- would hand their id, and with it their still-valid tokens, to the next one
-- to register. Ids now come from this counter, which only grows.
CREATE TABLE id_counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO id_counters (name, value) SELECT 'users', COALESCE(MAX(id), 0) FROM users;
