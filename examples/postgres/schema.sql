-- An application table whose changes invalidate every pod's cache, through the daemon.
--
-- The trigger NOTIFYs the invalidation channel `shop_invalidate` with the cache keys of the rows
-- that changed ({"keys": ["product:42"]}); the daemon (postgres.channels in config.yaml) turns
-- each payload into an `invalidate` event of namespace `shop`, and every pod's TwoLevelCache
-- drops those keys. A NOTIFY is sent at commit: a rolled-back change invalidates nothing.
-- Run it after `hotreload db install` (which creates the settings table, hotreload_settings).

CREATE TABLE IF NOT EXISTS products (
    id         bigint PRIMARY KEY,
    name       text NOT NULL,
    price      numeric(10, 2) NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION products_invalidate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('shop_invalidate', '{"prefixes": ["product:"]}');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('shop_invalidate',
                          json_build_object('keys', json_build_array('product:' || OLD.id))::text);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.id <> OLD.id) THEN
        PERFORM pg_notify('shop_invalidate',
                          json_build_object('keys', json_build_array('product:' || NEW.id))::text);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS products_invalidate ON products;
CREATE TRIGGER products_invalidate AFTER INSERT OR UPDATE OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION products_invalidate();
DROP TRIGGER IF EXISTS products_invalidate_all ON products;
CREATE TRIGGER products_invalidate_all AFTER TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION products_invalidate();

-- The namespace's settings live in the settings table: one row per key, the value as JSON.
-- Every committed change is published by the daemon as one event (a new version).
INSERT INTO hotreload_settings (namespace, key, value) VALUES
    ('shop', 'pricing.multiplier', '1.0'),
    ('shop', 'features.search', 'false')
ON CONFLICT (namespace, key) DO NOTHING;

INSERT INTO products (id, name, price) VALUES (1, 'teapot', 20.00), (2, 'kettle', 35.50)
ON CONFLICT (id) DO NOTHING;
