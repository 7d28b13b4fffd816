-- Join state stays bounded: every bid joined with its auction when the bid
-- comes within 10 s of the auction opening (Nexmark, 10 M events: about
-- 600,000 auctions and 9.2 M bids). Rows leave the join's state as the
-- watermarks pass, so peak memory does not grow with the input.
CREATE SOURCE auction (id BIGINT, seller BIGINT, category BIGINT, date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH (connector = 'nexmark', kind = 'auction', events = '10000000', rate = '100000', seed = '7');
CREATE SOURCE bid (auction BIGINT, price BIGINT, date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND)
WITH (connector = 'nexmark', kind = 'bid', events = '10000000', rate = '100000', seed = '7');
CREATE STREAM early_bids AS
SELECT a.id, a.category, b.price, b.date_time
FROM auction a JOIN bid b
  ON a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '10' SECOND;
CREATE STREAM per_category AS
SELECT category, COUNT(*) AS bids, MAX(price) AS top, window_start
FROM TUMBLE(early_bids, date_time, INTERVAL '10' SECOND)
GROUP BY category, window_start, window_end;
