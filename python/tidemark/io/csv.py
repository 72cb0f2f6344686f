"""pw.io.csv."""
from ._utils import CsvParserSettings, fs_read, fs_write  # noqa: F401


def read(path, *, schema, csv_settings=None, mode: str = "streaming", autocommit_duration_ms=1500, name=None,
         persistent_id=None, skip_bad_rows=False, **kwargs):
    return fs_read(path, "csv", schema=schema, mode=mode, csv_settings=csv_settings,
                   autocommit_duration_ms=autocommit_duration_ms, name=name, persistent_id=persistent_id,
                   skip_bad_rows=skip_bad_rows)


def write(table, filename, *, name=None, persistent_id=None, **kwargs):
    fs_write(table, filename, "csv", name, persistent_id)
