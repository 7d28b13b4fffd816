-- Nexmark q8, monitor new users: people who put up an auction in the same
-- 10 s tumbling window in which they registered: the join of two windowed
-- aggregates on the seller and the window.
CREATE SOURCE person (
    id        BIGINT NOT NULL,
    name      VARCHAR,
    city      VARCHAR,
    state     VARCHAR,
    date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', kind = 'person', events = '1000000', rate = '100000', seed = '42');

CREATE SOURCE auction (
    id        BIGINT NOT NULL,
    seller    BIGINT,
    category  BIGINT,
    date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (connector = 'nexmark', kind = 'auction', events = '1000000', rate = '100000', seed = '42');

CREATE STREAM new_people AS
SELECT id, name, window_start, window_end
FROM TUMBLE(person, date_time, INTERVAL '10' SECOND)
GROUP BY id, name, window_start, window_end;

CREATE STREAM sellers AS
SELECT seller, window_start, window_end
FROM TUMBLE(auction, date_time, INTERVAL '10' SECOND)
GROUP BY seller, window_start, window_end;

CREATE STREAM q8 AS
SELECT p.id, p.name, p.window_start
FROM new_people AS p JOIN sellers AS a
ON p.id = a.seller AND p.window_end = a.window_end;
