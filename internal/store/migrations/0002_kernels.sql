-- 0002_kernels: the kernel catalog, and images that name their kernel.
--
-- An image refers to a catalog kernel by name (images.kernel_ref, NULL
-- for none); the foreign key keeps a kernel that images use from being
-- deleted.

CREATE TABLE kernels (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    kernel_path TEXT NOT NULL,
    initrd_path TEXT NOT NULL DEFAULT '',
    modules_dir TEXT NOT NULL DEFAULT '',
    version     TEXT NOT NULL DEFAULT '',
    managed     INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL
) STRICT;

ALTER TABLE images ADD COLUMN kernel_ref TEXT REFERENCES kernels(name);

CREATE INDEX images_kernel_ref ON images(kernel_ref);
