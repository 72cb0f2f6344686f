"""pw.io.jsonlines."""
from ._utils import fs_read, fs_write


def read(path, *, schema, mode: str = "streaming", json_field_paths=None, autocommit_duration_ms=1500,
         name=None, persistent_id=None, skip_bad_rows=False, **kwargs):
    return fs_read(path, "json", schema=schema, mode=mode, autocommit_duration_ms=autocommit_duration_ms,
                   name=name, persistent_id=persistent_id, skip_bad_rows=skip_bad_rows)


def write(table, filename, *, name=None, persistent_id=None, **kwargs):
    fs_write(table, filename, "json", name, persistent_id)
