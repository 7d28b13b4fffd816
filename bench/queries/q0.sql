-- Nexmark q0, pass-through: every bid, every column, unchanged. Measures
-- the engine's fixed cost per event (generation, batching, the sink).
-- `laminar bench --query q0` sets the events, rate and seed; `laminar
-- run bench/queries/q0.sql` runs it as written.
CREATE SOURCE bid (
    auction   BIGINT NOT NULL,
    bidder    BIGINT,
    price     BIGINT,
    channel   VARCHAR,
    url       VARCHAR,
    date_time TIMESTAMP,
    extra     VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', kind = 'bid', events = '1000000', rate = '100000', seed = '42');

CREATE STREAM q0 AS SELECT * FROM bid;
