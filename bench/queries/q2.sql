-- Nexmark q2, selection: the bids on a sample of auctions.
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

CREATE STREAM q2 AS
SELECT auction, price FROM bid WHERE auction % 123 = 0;
