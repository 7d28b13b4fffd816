-- The Q5-style windowed count for the reactor benchmark: bids per auction
-- over a 10 s window sliding every 2 s (five windows per bid), final rows
-- on window close, written to stdout and discarded.
CREATE SOURCE bid (
    auction   BIGINT NOT NULL,
    price     BIGINT,
    date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', kind = 'bid', events = '5000000', rate = '100000', seed = '42');

CREATE STREAM q5 AS
SELECT auction, COUNT(*) AS bids, window_start, window_end
FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end;
