-- Checkpoint benchmark: state that only grows. Every (auction, bidder)
-- pair of the Nexmark bids is a group of one day-long window, so nothing
-- closes until the end and each checkpoint holds every group seen so far.
-- `events` sets the state size (about 1.3 groups per 2 bids); see
-- bench/RESULTS.md for the sizes it gives.
CREATE SOURCE bid (
    auction   BIGINT NOT NULL,
    bidder    BIGINT NOT NULL,
    price     BIGINT,
    date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', kind = 'bid', events = '{events}', rate = '100000', seed = '42');

CREATE STREAM totals AS
SELECT auction, bidder, COUNT(*) AS bids, SUM(price) AS total, MAX(price) AS top, window_start
FROM TUMBLE(bid, date_time, INTERVAL '1' DAY)
GROUP BY auction, bidder, window_start, window_end;
