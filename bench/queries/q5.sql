-- Nexmark q5, hot items: the auction(s) with the most bids in each 10 s
-- window, sliding every 2 s. Results appear when a window closes, so
-- latency runs from the bid that moved the watermark past the window's
-- end to the window's row.
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

CREATE STREAM counts AS
SELECT auction, COUNT(*) AS num, window_start, window_end
FROM HOP(bid, date_time, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end;

CREATE STREAM q5 AS
SELECT auction, num, window_start, window_end FROM (
    SELECT auction, num, window_start, window_end,
           RANK() OVER (PARTITION BY window_start, window_end ORDER BY num DESC) AS rk
    FROM counts
) AS ranked WHERE rk <= 1;
