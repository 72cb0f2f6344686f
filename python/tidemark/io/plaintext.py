"""pw.io.plaintext: one row per line, column `data`."""
from ._utils import fs_read


def read(path, *, mode: str = "streaming", object_pattern="*", with_metadata=False, autocommit_duration_ms=1500,
         name=None, persistent_id=None, **kwargs):
    return fs_read(path, "plaintext", mode=mode, autocommit_duration_ms=autocommit_duration_ms, name=name,
                   persistent_id=persistent_id)
