-- A 10 s tumbling count per auction over the peer benchmark's 2M-row bid
-- CSV (191 MB), written by `../shared/peers/run.sh --n 2000000`: large
-- enough to be read by every shard at once. bench/RESULTS.md (Split reading) compares
--   laminar run --shards 2 bench/queries/peers_tumble.sql
--   laminar run --shards 2 --split-bytes-min 999999999999 bench/queries/peers_tumble.sql
-- (split, and read in order by one shard): the same rows either way.
CREATE SOURCE bids (
    auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
    date_time TIMESTAMP, extra VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'file', path = '/tmp/peers/data/bids_2000000.csv', format = 'csv', header = 'true');

CREATE STREAM c AS
SELECT auction, COUNT(*) AS n, window_start
FROM TUMBLE(bids, date_time, INTERVAL '10' SECOND)
GROUP BY auction, window_start, window_end;

CREATE SINK o FROM c WITH (connector = 'file', path = 'out/peers_tumble.csv');
