"""pw.io.fs: files and directories (csv, json lines, plaintext, binary)."""
from ._utils import fs_read, fs_write


def read(path, format: str = "csv", *, schema=None, mode: str = "streaming", csv_settings=None,
         json_field_paths=None, object_pattern="*", with_metadata=False, autocommit_duration_ms=1500,
         name=None, persistent_id=None, debug_data=None, skip_bad_rows=False, **kwargs):
    """Reads a file or a directory. mode="streaming" keeps watching for new, modified and
    deleted files until the run is stopped; "static" reads what is there and finishes."""
    return fs_read(path, format, schema=schema, mode=mode, csv_settings=csv_settings,
                   autocommit_duration_ms=autocommit_duration_ms, name=name, persistent_id=persistent_id,
                   skip_bad_rows=skip_bad_rows)


def write(table, filename, format: str = "csv", *, name=None, persistent_id=None, **kwargs):
    """Writes every change of the table: its columns, then time and diff."""
    if format not in ("csv", "json", "jsonlines"):
        raise ValueError(f"pw.io.fs.write: format must be csv or json, not {format!r}")
    fs_write(table, filename, format, name, persistent_id)
