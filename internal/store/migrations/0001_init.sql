-- 0001_init: images and VMs.
--
-- Times are RFC 3339 text in UTC with a fixed nine-digit fraction, so text
-- order is time order. Nested structs of a VM live in *_json columns; the
-- columns the store queries or constrains are scalar.

CREATE TABLE images (
    id                                TEXT PRIMARY KEY NOT NULL,
    name                              TEXT NOT NULL UNIQUE,
    managed                           INTEGER NOT NULL DEFAULT 0,
    artifact_dir                      TEXT NOT NULL DEFAULT '',
    rootfs_path                       TEXT NOT NULL DEFAULT '',
    work_seed_path                    TEXT NOT NULL DEFAULT '',
    kernel_path                       TEXT NOT NULL DEFAULT '',
    initrd_path                       TEXT NOT NULL DEFAULT '',
    modules_dir                       TEXT NOT NULL DEFAULT '',
    build_size                        TEXT NOT NULL DEFAULT '',
    seeded_ssh_public_key_fingerprint TEXT NOT NULL DEFAULT '',
    created_at                        TEXT NOT NULL,
    updated_at                        TEXT NOT NULL
) STRICT;

CREATE TABLE vms (
    id              TEXT PRIMARY KEY NOT NULL,
    name            TEXT NOT NULL UNIQUE,
    image_id        TEXT NOT NULL REFERENCES images(id),
    state           TEXT NOT NULL,
    guest_ip        TEXT NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    last_touched_at TEXT NOT NULL,
    spec_json       TEXT NOT NULL DEFAULT '{}',
    runtime_json    TEXT NOT NULL DEFAULT '{}',
    stats_json      TEXT NOT NULL DEFAULT '{}',
    workspace_json  TEXT NOT NULL DEFAULT '{}'
) STRICT;

CREATE INDEX vms_image_id ON vms(image_id);
CREATE INDEX vms_created_at_name ON vms(created_at, name);
