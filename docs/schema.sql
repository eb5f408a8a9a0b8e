-- The schema as the migrations (src/database/migrations/) leave it: domains, tables
-- with their columns, keys, rules and indexes, and the functions. Generated from a
-- migrated database by `npm run schema`; test/schema-sql.e2e-spec.ts fails when it
-- is out of date. Read it to see the schema whole; change it through a migration.

-- Domains: a rule about one column, checked where a value of it is written (decision 18).
CREATE DOMAIN account_balance AS bigint CHECK (((VALUE >= 0) AND (VALUE <= '9007199254740991'::bigint)));
CREATE DOMAIN account_version AS bigint CHECK ((VALUE >= 1));
CREATE DOMAIN charge_status AS text CHECK ((VALUE = ANY (ARRAY['succeeded'::text, 'failed'::text])));
CREATE DOMAIN code_name AS text CHECK (((char_length(VALUE) <= 50) AND (VALUE ~ '^[a-z][a-z_-]*$'::text)));
CREATE DOMAIN currency_code AS text CHECK ((VALUE ~ '^[A-Z]{3}$'::text));
CREATE DOMAIN delivery_status AS text CHECK ((VALUE = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text])));
CREATE DOMAIN description_text AS text CHECK ((char_length(VALUE) <= 500));
CREATE DOMAIN display_name AS text CHECK (((char_length(VALUE) >= 1) AND (char_length(VALUE) <= 100)));
CREATE DOMAIN event_type AS text CHECK ((VALUE ~ '^[a-z_]+\.[a-z_]+$'::text));
CREATE DOMAIN idempotency_key AS text CHECK (((char_length(VALUE) <= 255) AND (VALUE ~ '^[\x21-\x7e]+$'::text)));
CREATE DOMAIN jsonb_array AS jsonb CHECK ((jsonb_typeof(VALUE) = 'array'::text));
CREATE DOMAIN jsonb_object AS jsonb CHECK ((jsonb_typeof(VALUE) = 'object'::text));
CREATE DOMAIN ledger_amount AS bigint CHECK ((VALUE <> 0));
CREATE DOMAIN ledger_entry_type AS text CHECK ((VALUE = ANY (ARRAY['deposit'::text, 'charge'::text, 'refund'::text, 'top_up'::text])));
CREATE DOMAIN money_amount AS bigint CHECK (((VALUE > 0) AND (VALUE <= '1000000000000'::bigint)));
CREATE DOMAIN sha256_hex AS text CHECK (((char_length(VALUE) = 64) AND (VALUE ~ '^[0-9a-f]+$'::text)));
CREATE DOMAIN stored_response_status AS integer CHECK (((VALUE >= 200) AND (VALUE <= 499)));
CREATE DOMAIN top_up_status AS text CHECK ((VALUE = ANY (ARRAY['pending'::text, 'succeeded'::text, 'declined'::text, 'failed'::text])));
CREATE DOMAIN webhook_url AS text CHECK (((VALUE ~ '^https?://'::text) AND (char_length(VALUE) <= 2048)));

-- Balances in minor units. A balance changes only by LedgerService.post(): one
-- conditional UPDATE that refuses to leave [0, 2^53 - 1], with the ledger entry that
-- explains it. version is the ETag of PUT and DELETE (If-Match).
CREATE TABLE accounts (
  merchant_id text NOT NULL,
  id text NOT NULL,
  name display_name NOT NULL,
  currency currency_code NOT NULL,
  balance account_balance NOT NULL DEFAULT 0,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  updated_at timestamp with time zone NOT NULL DEFAULT now(),
  metadata jsonb_object NOT NULL DEFAULT '{}'::jsonb,
  version account_version NOT NULL DEFAULT 1,
  closed_at timestamp with time zone,
  CONSTRAINT accounts_pkey PRIMARY KEY (merchant_id, id),
  CONSTRAINT accounts_closed_is_empty CHECK (((closed_at IS NULL) OR ((balance)::bigint = 0))),
  CONSTRAINT accounts_merchant_id_fkey FOREIGN KEY (merchant_id) REFERENCES merchants(id) ON DELETE RESTRICT
);

-- Money out. A charge without the funds is recorded too, as failed, and its 402 is
-- stored with the key like a success. amount_refunded adds up the refunds.
CREATE TABLE charges (
  merchant_id text NOT NULL,
  id text NOT NULL,
  account_id text NOT NULL,
  amount money_amount NOT NULL,
  currency currency_code NOT NULL,
  description description_text,
  metadata jsonb_object NOT NULL DEFAULT '{}'::jsonb,
  status charge_status NOT NULL,
  failure_code text,
  amount_refunded bigint NOT NULL DEFAULT 0,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT charges_pkey PRIMARY KEY (merchant_id, id),
  CONSTRAINT charges_check CHECK (((amount_refunded >= 0) AND (amount_refunded <= (amount)::bigint))),
  CONSTRAINT charges_check1 CHECK ((((status)::text = 'failed'::text) = (failure_code IS NOT NULL))),
  CONSTRAINT charges_check2 CHECK ((((status)::text = 'succeeded'::text) OR (amount_refunded = 0))),
  CONSTRAINT charges_merchant_id_account_id_fkey FOREIGN KEY (merchant_id, account_id) REFERENCES accounts(merchant_id, id) ON DELETE RESTRICT
);
CREATE INDEX charges_account_idx ON charges USING btree (merchant_id, account_id, id);

-- Money in, credited in the request's transaction with the key that names it.
CREATE TABLE deposits (
  merchant_id text NOT NULL,
  id text NOT NULL,
  account_id text NOT NULL,
  amount money_amount NOT NULL,
  currency currency_code NOT NULL,
  description description_text,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT deposits_pkey PRIMARY KEY (merchant_id, id),
  CONSTRAINT deposits_merchant_id_account_id_fkey FOREIGN KEY (merchant_id, account_id) REFERENCES accounts(merchant_id, id) ON DELETE RESTRICT
);

-- The outbox: what happened, written in the transaction of the change it tells of, so
-- it exists if and only if that change committed.
CREATE TABLE events (
  merchant_id text NOT NULL,
  id text NOT NULL,
  type event_type NOT NULL,
  data jsonb_object NOT NULL,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT events_pkey PRIMARY KEY (merchant_id, id),
  CONSTRAINT events_merchant_id_fkey FOREIGN KEY (merchant_id) REFERENCES merchants(id) ON DELETE CASCADE
);
CREATE INDEX events_created_idx ON events USING btree (created_at);

-- Completed requests: written in the transaction of the work they remember, so a
-- row exists if and only if that work committed. The exact response is replayed to
-- every retry with the same key and fingerprint until expires_at; after that the key
-- counts as unused. Claimed by claim_idempotency_key() under a transaction-scoped lock.
CREATE TABLE idempotency_keys (
  merchant_id text NOT NULL,
  key idempotency_key NOT NULL,
  request_method text NOT NULL,
  request_path text NOT NULL,
  fingerprint sha256_hex NOT NULL,
  response_status stored_response_status NOT NULL,
  response_content_type text NOT NULL,
  response_body text NOT NULL,
  response_location text,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  expires_at timestamp with time zone NOT NULL,
  CONSTRAINT idempotency_keys_pkey PRIMARY KEY (merchant_id, key),
  CONSTRAINT idempotency_keys_merchant_id_fkey FOREIGN KEY (merchant_id) REFERENCES merchants(id) ON DELETE CASCADE
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys USING btree (expires_at);

-- Requests under way in atomic phases (card top-ups, decision 12): where each rests
-- between two phases, who holds it (a lease), and its tries. Written only by the
-- idempotency module; deleted in the transaction that stores the request's answer.
CREATE TABLE idempotency_recovery_points (
  merchant_id text NOT NULL,
  key idempotency_key NOT NULL,
  request_method text NOT NULL,
  request_path text NOT NULL,
  fingerprint sha256_hex NOT NULL,
  operation code_name NOT NULL,
  recovery_point code_name NOT NULL,
  locked_until timestamp with time zone,
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  next_attempt_at timestamp with time zone NOT NULL DEFAULT now(),
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  updated_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT idempotency_recovery_points_pkey PRIMARY KEY (merchant_id, key),
  CONSTRAINT idempotency_recovery_points_merchant_id_fkey FOREIGN KEY (merchant_id) REFERENCES merchants(id) ON DELETE CASCADE
);
CREATE INDEX idempotency_recovery_points_due ON idempotency_recovery_points USING btree (next_attempt_at);

-- Append-only: one entry per succeeded deposit, charge, refund and top-up
-- (UNIQUE source_id), written in the statement that moves the balance. A balance always
-- equals the sum of its account's entries (npm run audit).
CREATE TABLE ledger_entries (
  merchant_id text NOT NULL,
  id text NOT NULL,
  account_id text NOT NULL,
  type ledger_entry_type NOT NULL,
  amount ledger_amount NOT NULL,
  balance_after account_balance NOT NULL,
  source_id text NOT NULL,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT ledger_entries_pkey PRIMARY KEY (merchant_id, id),
  CONSTRAINT ledger_entries_merchant_id_source_id_key UNIQUE (merchant_id, source_id),
  CONSTRAINT ledger_entries_check CHECK ((((type)::text = 'charge'::text) = ((amount)::bigint < 0))),
  CONSTRAINT ledger_entries_merchant_id_account_id_fkey FOREIGN KEY (merchant_id, account_id) REFERENCES accounts(merchant_id, id) ON DELETE RESTRICT
);
CREATE INDEX ledger_entries_account_idx ON ledger_entries USING btree (merchant_id, account_id, id);

-- The API's clients. Each has one API key, kept only as its SHA-256.
-- Every other table carries merchant_id and leads its primary key with it: a request
-- touches one merchant's rows only (and, on Citus, one node).
CREATE TABLE merchants (
  id text NOT NULL,
  name display_name NOT NULL,
  api_key_hash sha256_hex NOT NULL,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT merchants_pkey PRIMARY KEY (id),
  CONSTRAINT merchants_api_key_hash_key UNIQUE (api_key_hash)
);

-- Money back to the account, of all or part of a succeeded charge; the charge's
-- row lock makes concurrent refunds take turns, so they never exceed it.
CREATE TABLE refunds (
  merchant_id text NOT NULL,
  id text NOT NULL,
  charge_id text NOT NULL,
  account_id text NOT NULL,
  amount money_amount NOT NULL,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT refunds_pkey PRIMARY KEY (merchant_id, id),
  CONSTRAINT refunds_merchant_id_account_id_fkey FOREIGN KEY (merchant_id, account_id) REFERENCES accounts(merchant_id, id) ON DELETE RESTRICT,
  CONSTRAINT refunds_merchant_id_charge_id_fkey FOREIGN KEY (merchant_id, charge_id) REFERENCES charges(merchant_id, id) ON DELETE RESTRICT
);
CREATE INDEX refunds_charge_idx ON refunds USING btree (merchant_id, charge_id);

-- Money in from a card, charged at a processor that no transaction of ours can roll
-- back. pending while its request is under way; the processor's key is the top-up's id.
CREATE TABLE top_ups (
  merchant_id text NOT NULL,
  id text NOT NULL,
  account_id text NOT NULL,
  amount money_amount NOT NULL,
  currency currency_code NOT NULL,
  card text NOT NULL,
  idempotency_key text NOT NULL,
  status top_up_status NOT NULL,
  processor_payment_id text,
  decline_code text,
  failure_code text,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  updated_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT top_ups_pkey PRIMARY KEY (merchant_id, id),
  CONSTRAINT top_ups_check1 CHECK ((((status)::text <> 'succeeded'::text) OR (processor_payment_id IS NOT NULL))),
  CONSTRAINT top_ups_merchant_id_account_id_fkey FOREIGN KEY (merchant_id, account_id) REFERENCES accounts(merchant_id, id) ON DELETE RESTRICT
);
CREATE UNIQUE INDEX top_ups_pending_key ON top_ups USING btree (merchant_id, idempotency_key) WHERE ((status)::text = 'pending'::text);

-- Every try of a delivery: what the endpoint answered, how fast, or what failed.
CREATE TABLE webhook_attempts (
  id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
  merchant_id text NOT NULL,
  event_id text NOT NULL,
  endpoint_id text NOT NULL,
  status_code integer,
  latency_ms integer NOT NULL,
  error text,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT webhook_attempts_pkey PRIMARY KEY (merchant_id, id),
  CONSTRAINT webhook_attempts_merchant_id_event_id_endpoint_id_fkey FOREIGN KEY (merchant_id, event_id, endpoint_id) REFERENCES webhook_deliveries(merchant_id, event_id, endpoint_id) ON DELETE CASCADE
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts USING btree (merchant_id, event_id, endpoint_id);

-- One per event and endpoint, queued in the event's own statement; sent at least
-- once, tried again with back-off until a 2xx, given up after a bound.
CREATE TABLE webhook_deliveries (
  merchant_id text NOT NULL,
  event_id text NOT NULL,
  endpoint_id text NOT NULL,
  status delivery_status NOT NULL DEFAULT 'pending'::text,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamp with time zone NOT NULL DEFAULT now(),
  locked_until timestamp with time zone,
  delivered_at timestamp with time zone,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  redelivered_at timestamp with time zone,
  CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (merchant_id, event_id, endpoint_id),
  CONSTRAINT webhook_deliveries_merchant_id_endpoint_id_fkey FOREIGN KEY (merchant_id, endpoint_id) REFERENCES webhook_endpoints(merchant_id, id) ON DELETE CASCADE,
  CONSTRAINT webhook_deliveries_merchant_id_event_id_fkey FOREIGN KEY (merchant_id, event_id) REFERENCES events(merchant_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_due_by_endpoint ON webhook_deliveries USING btree (merchant_id, endpoint_id, next_attempt_at) WHERE ((status)::text = 'pending'::text);
CREATE INDEX webhook_deliveries_oldest ON webhook_deliveries USING btree (created_at) WHERE ((status)::text = 'pending'::text);

-- Where a merchant wants its events, and the secrets that sign them (a rotated one
-- signs beside the new one for a while). One that answers 410, or no try with a 2xx for
-- WEBHOOK_DISABLE_AFTER_SECONDS, is disabled by the service (disabled_reason).
CREATE TABLE webhook_endpoints (
  merchant_id text NOT NULL,
  id text NOT NULL,
  url webhook_url NOT NULL,
  description description_text,
  enabled boolean NOT NULL DEFAULT true,
  secrets jsonb_array NOT NULL,
  deleted_at timestamp with time zone,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  updated_at timestamp with time zone NOT NULL DEFAULT now(),
  failing_since timestamp with time zone,
  disabled_reason code_name,
  CONSTRAINT webhook_endpoints_pkey PRIMARY KEY (merchant_id, id),
  CONSTRAINT webhook_endpoints_merchant_id_fkey FOREIGN KEY (merchant_id) REFERENCES merchants(id) ON DELETE CASCADE
);

-- Functions.
CREATE OR REPLACE FUNCTION public.claim_idempotency_key(lock_id bigint, merchant text, idempotency_key text)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
      BEGIN
        -- Transaction-scoped: released by COMMIT or ROLLBACK, never waited for.
        IF NOT pg_try_advisory_xact_lock(lock_id) THEN
          RAISE EXCEPTION 'idempotency key % is in use by another transaction', lock_id
            USING ERRCODE = 'lock_not_available';
        END IF;
        IF EXISTS (SELECT 1 FROM idempotency_keys
                    WHERE merchant_id = merchant AND key = idempotency_key AND expires_at > now()) THEN
          RAISE EXCEPTION 'idempotency key % has a stored response', lock_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'idempotency_keys_pkey';
        END IF;
      END
      $function$;

CREATE OR REPLACE FUNCTION public.claim_idempotency_key(lock_id bigint, merchant text, idempotency_key text, in_phases boolean)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
      DECLARE
        stored_until timestamptz;
      BEGIN
        -- Transaction-scoped: released by COMMIT or ROLLBACK, never waited for.
        IF NOT pg_try_advisory_xact_lock(lock_id) THEN
          RAISE EXCEPTION 'idempotency key % is in use by another transaction', lock_id
            USING ERRCODE = 'lock_not_available';
        END IF;
        -- Under the lock nobody else stores a response for this key, and this
        -- statement's fresh snapshot sees every one already committed.
        SELECT expires_at INTO stored_until FROM idempotency_keys
         WHERE merchant_id = merchant AND key = idempotency_key;
        IF stored_until > now() THEN
          -- The error a second INSERT of the key would raise: the API replays the row.
          RAISE EXCEPTION 'idempotency key % has a stored response', lock_id
            USING ERRCODE = 'unique_violation', CONSTRAINT = 'idempotency_keys_pkey';
        ELSIF FOUND THEN
          DELETE FROM idempotency_keys WHERE merchant_id = merchant AND key = idempotency_key;
        END IF;
        IF NOT in_phases AND EXISTS (SELECT 1 FROM idempotency_recovery_points
                                      WHERE merchant_id = merchant AND key = idempotency_key) THEN
          RAISE EXCEPTION 'idempotency key % is in use by a request in phases', lock_id
            USING ERRCODE = 'lock_not_available';
        END IF;
      END
      $function$;
