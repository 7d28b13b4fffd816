-- Nexmark q3, local item suggestion: people in Oregon, Idaho or
-- California who put up an auction in category 10. A regular equi-join of
-- two append-only streams, its state bounded by the join's retention
-- (--join-state-ttl-ms, one hour of event time by default).
CREATE SOURCE person (
    id        BIGINT NOT NULL,
    name      VARCHAR,
    city      VARCHAR,
    state     VARCHAR,
    date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', kind = 'person', events = '1000000', rate = '100000', seed = '42');

CREATE SOURCE auction (
    id        BIGINT NOT NULL,
    seller    BIGINT,
    category  BIGINT,
    date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', kind = 'auction', events = '1000000', rate = '100000', seed = '42');

CREATE STREAM q3 AS
SELECT p.name, p.city, p.state, a.id
FROM auction AS a JOIN person AS p ON a.seller = p.id
WHERE a.category = 10 AND p.state IN ('OR', 'ID', 'CA');
