-- The verifiable log (stele-tlog): every stored event is the next leaf of its
-- tenant's append-only RFC 6962 Merkle tree, appended by the batch-writer in the
-- same transaction as the row, so no stored event is ever outside the log.
--
-- Rows stored before this migration have no leaf (leaf_index NULL): the log starts
-- with the first batch written after it. The leaf binds (tenant, event_hash,
-- received_at) (stele_tlog::leaf), so the row's content is bound through its hash.
ALTER TABLE audit_events ADD COLUMN leaf_index bigint;
ALTER TABLE late_events ADD COLUMN leaf_index bigint;

-- One row per tenant: the tree's size, root and right edge (the frontier: one hash
-- per set bit of size, largest subtree first, concatenated). Writers lock their
-- tenants' heads (in tenant order, so two writers never deadlock) before claiming
-- ids, so a tenant's leaves are appended by one transaction at a time.
CREATE TABLE tlog_heads (
    tenant_id  text        PRIMARY KEY,
    size       bigint      NOT NULL DEFAULT 0 CHECK (size >= 0),
    root       bytea       NOT NULL DEFAULT '\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
                           CHECK (octet_length(root) = 32),
    frontier   bytea       NOT NULL DEFAULT '' CHECK (octet_length(frontier) % 32 = 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The tree's stored hashes as C2SP tlog-tiles of height 8: tile (level, idx) holds
-- the hashes of nodes at tree level 8*level, entries 256*idx .. 256*idx+255,
-- concatenated (32 bytes each). A partial tile grows by appends; a full one has
-- 8192 bytes and never changes. Proofs read O(log n) tiles, never the leaves.
CREATE TABLE tlog_tiles (
    tenant_id text     NOT NULL,
    level     smallint NOT NULL CHECK (level >= 0),
    idx       bigint   NOT NULL CHECK (idx >= 0),
    hashes    bytea    NOT NULL CHECK (octet_length(hashes) % 32 = 0 AND octet_length(hashes) <= 8192),
    PRIMARY KEY (tenant_id, level, idx)
);

-- Signed checkpoints (C2SP tlog-checkpoint notes), one per tenant and tree size.
-- The primary key makes a second, different root for a size impossible to record;
-- the checkpointer also checks each new one is consistent with the previous one.
CREATE TABLE tlog_checkpoints (
    tenant_id    text        NOT NULL,
    size         bigint      NOT NULL CHECK (size > 0),
    root         bytea       NOT NULL CHECK (octet_length(root) = 32),
    note         text        NOT NULL,
    signed_at    timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    PRIMARY KEY (tenant_id, size)
);
