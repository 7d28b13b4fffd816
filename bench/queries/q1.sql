-- Nexmark q1, projection: bid prices converted from dollars to euros.
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

CREATE STREAM q1 AS
SELECT auction, bidder, 0.908 * price AS price, date_time FROM bid;
