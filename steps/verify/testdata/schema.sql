-- Tables of many types for verify's tests; created on blue and green.
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (x int, y text);

CREATE TABLE kinds (
    id bigint PRIMARY KEY,
    n numeric(20, 6),
    f4 real,
    f8 double precision,
    ts timestamptz,
    t timestamp,
    d date,
    iv interval,
    j json,
    jb jsonb,
    arr int[],
    tarr text[],
    b bytea,
    txt text,
    m mood,
    cash money,
    u uuid,
    p pair,
    nul text,
    bits bit varying(16),
    r int4range,
    tm time,
    ip inet
);

-- Composite primary key: compared by row comparison over (tenant, day, seq).
CREATE TABLE composite (
    tenant int,
    day date,
    seq int,
    v text,
    PRIMARY KEY (tenant, day, seq)
);

-- A collatable text key: its order may differ between collation libraries,
-- so it is compared in hash buckets.
CREATE TABLE textkey (code text PRIMARY KEY, v int);

-- No primary key: compared as a multiset of rows.
CREATE TABLE nokey (a int, b text, c double precision);
ALTER TABLE nokey REPLICA IDENTITY FULL;

CREATE TABLE events (id bigint, at date, payload jsonb, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE events_2023 PARTITION OF events FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');

-- An integer key far sparser than its rows: ranges come from sampled quantiles.
CREATE TABLE sparse (id bigint PRIMARY KEY, v int);
