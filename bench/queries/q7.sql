-- Nexmark q7, highest bid: the bid(s) with the highest price in each
-- 10 s tumbling window, emitted when the window closes.
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

CREATE STREAM q7 AS
SELECT auction, price, bidder, date_time FROM (
    SELECT auction, price, bidder, date_time, window_start, window_end,
           RANK() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rk
    FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND)
) AS ranked WHERE rk <= 1;
