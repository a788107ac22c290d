-- 0001_init: the mediator's schema.
--
-- queued_message and live_session keep the table and column names of the
-- TypeScript transport queue this server replaces, so that operators'
-- dashboards and ad-hoc queries keep working; the columns it lacked (lease,
-- attempts, size, normalised recipient key) are added and its types fixed
-- (timestamptz, uuid connection ids).

-- The seed creates the enum only when missing; do the same so a database
-- that once held the seed's schema does not fail on the type alone.
DO $$
BEGIN
    CREATE TYPE message_state AS ENUM ('pending', 'sending');
EXCEPTION
    WHEN duplicate_object THEN NULL;
END
$$;

CREATE TABLE queued_message (
    id                uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    connection_id     uuid          NOT NULL,
    -- did:key form of the recipient, as the seed stored it.
    recipient_dids    text[]        NOT NULL DEFAULT '{}',
    -- base58 Ed25519 verkey the forward was addressed to.
    recipient_key     text          NOT NULL,
    encrypted_message jsonb         NOT NULL,
    state             message_state NOT NULL DEFAULT 'pending',
    created_at        timestamptz   NOT NULL DEFAULT now(),
    -- Times the message was handed out; > 1 means redelivery.
    attempts          int           NOT NULL DEFAULT 0,
    -- Set while state = 'sending': who holds it and until when. A message
    -- whose lease ran out is claimable again without waiting for a sweeper.
    sending_since     timestamptz,
    lease_expires_at  timestamptz,
    sending_instance  text,
    sending_session   text,
    size_bytes        int           NOT NULL
);

-- The claim reads one connection's messages oldest first: with connection_id
-- leading and the sort key after it, the claim is an index range scan in the
-- wanted order that stops after LIMIT rows, however many rows other
-- connections have. The state/lease test is a filter on that range, which only
-- ever touches this connection's own in-flight rows. (A partial index on
-- state = 'pending' could not serve "pending OR lease expired".)
CREATE INDEX queued_message_connection_created_idx
    ON queued_message (connection_id, created_at, id);

-- For the sweeper that requeues expired or orphaned in-flight messages.
CREATE INDEX queued_message_state_lease_idx
    ON queued_message (state, lease_expires_at);

-- Every message is inserted, updated once per claim and deleted: the table
-- turns over constantly. The default thresholds (vacuum at 20% dead rows,
-- analyze at 10% changed) let dead index entries pile up at the head of each
-- connection's range, where every claim starts reading, and let statistics
-- lag behind bursts; vacuum and analyze it sooner.
ALTER TABLE queued_message SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

CREATE TABLE live_session (
    session_id       text        PRIMARY KEY,
    connection_id    uuid        NOT NULL,
    protocol_version text        NOT NULL,
    instance         text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_seen        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX live_session_connection_idx ON live_session (connection_id);
CREATE INDEX live_session_instance_idx ON live_session (instance);

CREATE TABLE mediator_instance (
    instance     text        PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mediator_key (
    verkey         text        PRIMARY KEY,
    purpose        text        NOT NULL,
    sealed_private bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX mediator_key_purpose_idx ON mediator_key (purpose, created_at);

CREATE TABLE didcomm_connection (
    id              uuid        PRIMARY KEY,
    state           text,
    protocol        text,
    our_did         text,
    our_key         text        NOT NULL,
    their_did       text,
    their_key       text        NOT NULL,
    their_label     text,
    their_endpoint  text,
    invitation_id   text,
    thread_id       text,
    mediation_state text        NOT NULL DEFAULT 'none',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (our_key, their_key)
);

-- ConnectionByTheirKey wants the newest connection of a peer key.
CREATE INDEX didcomm_connection_their_key_idx
    ON didcomm_connection (their_key, created_at DESC);

CREATE TABLE mediation_route (
    recipient_key text        PRIMARY KEY,
    connection_id uuid        NOT NULL REFERENCES didcomm_connection (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Keylist queries page through a connection's keys oldest first.
CREATE INDEX mediation_route_connection_idx
    ON mediation_route (connection_id, created_at, recipient_key);

CREATE TABLE device_info (
    connection_id   uuid        PRIMARY KEY REFERENCES didcomm_connection (id) ON DELETE CASCADE,
    device_token    text,
    device_platform text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
