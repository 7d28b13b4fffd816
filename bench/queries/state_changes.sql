-- Latency with a large, growing state: a changelog count and sum per
-- (auction, bidder) pair of the Nexmark bids. Every bid updates its group
-- and emits the change, so every event has a latency sample, while the
-- state grows by about 0.65 groups per bid (about 6 M groups, over 1 GB,
-- after 10 s at 1 M events/s). With `laminar bench --wal` this measures
-- what checkpoints of that state cost the event path.
CREATE SOURCE bid (
    auction   BIGINT NOT NULL,
    bidder    BIGINT NOT NULL,
    price     BIGINT,
    date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', kind = 'bid');

CREATE STREAM totals AS
SELECT auction, bidder, COUNT(*) AS bids, SUM(price) AS total
FROM bid
GROUP BY auction, bidder;

CREATE SINK out FROM totals WITH (connector = 'stdout');
