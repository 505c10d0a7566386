-- Verb forms are rewritten only when the type is not in the catalog as
-- written: vCita's own "pivot/update" stays "pivot/update", while
-- "client/create" still becomes "client/created". Same rule as hookd-ingest
-- (event_type_past_tense in shared/event.c).

CREATE OR REPLACE FUNCTION hookd_normalize_type(t text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    ent text;
    ev text;
    parts text[];
    aliased text;
    past text;
BEGIN
    IF t IS NULL THEN
        RAISE EXCEPTION 'event type must not be null';
    END IF;
    IF t = '*' THEN
        RETURN '*';
    END IF;
    IF position('/' IN t) > 0 THEN
        ent := split_part(t, '/', 1);
        ev := substr(t, length(ent) + 2);
    ELSIF position('.' IN t) > 0 THEN
        parts := string_to_array(t, '.');
        ent := parts[cardinality(parts) - 1];
        ev := parts[cardinality(parts)];
    ELSE
        SELECT a.name INTO aliased FROM event_type_aliases a WHERE a.alias = t;
        IF aliased IS NULL THEN
            RAISE EXCEPTION 'invalid event type "%": expected entity/event, entity/*, * or a known alias', t
                USING ERRCODE = '22023';
        END IF;
        RETURN aliased;
    END IF;
    IF ent !~ '^[A-Za-z0-9_-]{1,63}$' OR (ev <> '*' AND ev !~ '^[A-Za-z0-9_-]{1,63}$') THEN
        RAISE EXCEPTION 'invalid event type "%": expected entity/event, entity/*, * or a known alias', t
            USING ERRCODE = '22023';
    END IF;
    IF ent = 'custom' OR ev = '*' OR EXISTS (SELECT 1 FROM event_types WHERE name = ent || '/' || ev) THEN
        RETURN ent || '/' || ev;
    END IF;
    past := CASE ev
              WHEN 'create' THEN 'created'
              WHEN 'update' THEN 'updated'
              WHEN 'delete' THEN 'deleted'
              WHEN 'cancel' THEN 'cancelled'
              WHEN 'confirm' THEN 'confirmed'
              ELSE ev
            END;
    RETURN ent || '/' || past;
END
$$;
