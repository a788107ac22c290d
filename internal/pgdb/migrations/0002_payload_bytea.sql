-- 0002_payload_bytea: queued messages are kept as the bytes the sender sent.
--
-- The seed stored them as jsonb, which the mediator never queries into, and
-- which is hazardous for data from strangers: jsonb refuses some valid JSON
-- ("\u0000", numbers beyond numeric's range), and it prints numbers in full
-- when a message is read back: a 9-byte 1e131071 in a forward came out as
-- 131,072 digits on delivery, so a megabyte of them would have been 13 GB
-- to deliver, and its wallet could not have fetched anything any more. It also costs
-- a JSON parse per insert and a JSON print per delivery. bytea keeps the
-- packed message byte for byte.
--
-- The column changes type in place, rewriting the table under an exclusive
-- lock (seconds per million queued messages); instances of the previous
-- version cannot queue into it afterwards (see README, "Back up and upgrade"),
-- so an instance starting up does not apply it while others are alive:
-- mediator: stop older instances first
ALTER TABLE queued_message
    ALTER COLUMN encrypted_message TYPE bytea
    USING convert_to(encrypted_message::text, 'UTF8');
