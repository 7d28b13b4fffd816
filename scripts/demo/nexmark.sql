-- The demo: one million Nexmark events (about 920,000 bids over 100 s of
-- event time) through two continuous queries.

CREATE SOURCE bid (
    auction   BIGINT NOT NULL,
    bidder    BIGINT,
    price     BIGINT,
    channel   VARCHAR,
    date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', kind = 'bid', events = '1000000', rate = '10000', seed = '42');

-- Every 10 s of event time: how many bids, from how many bidders, and the
-- price range. No sink, so it prints to stdout.
CREATE STREAM per_window AS
SELECT window_start,
       COUNT(*) AS bids,
       COUNT(DISTINCT bidder) AS bidders,
       MIN(price) AS min_price,
       MAX(price) AS max_price,
       ROUND(AVG(price)) AS avg_price,
       COUNT(*) FILTER (WHERE channel = 'Google') AS google_bids
FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND)
GROUP BY window_start, window_end;

-- Nexmark Q5's shape: bids per auction over a 10 s window sliding every
-- 2 s, kept when an auction is hot.
CREATE STREAM hot_auctions AS
SELECT auction, COUNT(*) AS bids, window_start, window_end
FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end
HAVING COUNT(*) >= 100
EMIT ON WINDOW CLOSE;

CREATE SINK hot_out FROM hot_auctions
WITH (connector = 'file', path = 'out/hot_auctions.csv', format = 'csv');
