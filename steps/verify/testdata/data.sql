-- Rows for schema.sql, loaded on blue only (green gets them by replication).
INSERT INTO kinds
SELECT i,
       (i * 12345.678901)::numeric(20, 6),
       (i / 7.0)::real,
       CASE i % 50 WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity'
                   WHEN 3 THEN 1e-300 WHEN 4 THEN -0.0 ELSE i / 3.0 END,
       timestamptz '2020-01-01 00:00:00+05' + i * interval '37 minutes 13.123456 seconds',
       timestamp '1999-12-31 23:59:59.999999' + i * interval '1 hour',
       date '2000-02-28' + i,
       make_interval(months => i % 14, days => i % 40, secs => i * 1.5),
       json_build_object('i', i, 'name', 'row ' || i, 'tags', json_build_array('a', i)),
       jsonb_build_object('i', i, 'nested', jsonb_build_object('x', i * 0.5), 'uni', 'Grüße ' || i),
       ARRAY[i, i + 1, NULL],
       ARRAY['x' || i, 'quote"d', 'com,ma', NULL],
       decode(md5(i::text), 'hex'),
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'texto ünïcødé ☃ 🐘 ' || i || E'\n\ttab\\' END,
       (ARRAY['sad', 'ok', 'happy'])[1 + i % 3]::mood,
       (i * 1.25)::numeric::money,
       md5(i::text)::uuid,
       ROW(i, 'p' || i)::pair,
       NULL,
       (i % 65536)::bit(16)::varbit,
       int4range(i, i + 10),
       time '00:00:00' + i * interval '17 seconds',
       ('10.0.' || (i % 256) || '.' || (i / 256 % 256))::inet
  FROM generate_series(1, 3000) i;

INSERT INTO composite
SELECT 1 + i % 4, date '2024-01-01' + (i % 100), i, 'v' || i
  FROM generate_series(1, 4000) i;

INSERT INTO textkey SELECT 'code-' || i || ' ü', i FROM generate_series(1, 2000) i;

INSERT INTO nokey SELECT i, 'row ' || i, i * 0.1 FROM generate_series(1, 1500) i;
INSERT INTO nokey VALUES (1, 'row 1', 0.1), (NULL, NULL, NULL); -- a duplicate row and an all-NULL row

INSERT INTO events
SELECT i, date '2023-01-01' + (i % 700), jsonb_build_object('n', i)
  FROM generate_series(1, 3000) i;

INSERT INTO sparse SELECT i::bigint * 1000003, i FROM generate_series(1, 3000) i;

ANALYZE;
