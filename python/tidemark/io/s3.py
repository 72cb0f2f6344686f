"""pw.io.s3: objects under an S3 prefix; AwsS3Settings for connectors and persistence."""
from __future__ import annotations

from typing import Optional

from ._utils import fs_read


class AwsS3Settings:
    """S3 connection settings; unset fields come from the AWS_* environment variables."""

    def __init__(self, *, bucket_name: Optional[str] = None, access_key: Optional[str] = None,
                 secret_access_key: Optional[str] = None, with_path_style: bool = False,
                 region: Optional[str] = None, endpoint: Optional[str] = None,
                 session_token: Optional[str] = None):
        self.bucket_name = bucket_name
        self.access_key = access_key
        self.secret_access_key = secret_access_key
        self.with_path_style = with_path_style
        self.region = region
        self.endpoint = endpoint
        self.session_token = session_token

    def _cpp(self):
        from .. import _engine
        return _engine.AwsS3Settings(self.bucket_name or "", self.access_key or "", self.secret_access_key or "",
                                     bool(self.with_path_style), self.region or "", self.endpoint or "",
                                     self.session_token or "")

    def __repr__(self):
        return (f"AwsS3Settings(bucket_name={self.bucket_name!r}, region={self.region!r}, "
                f"endpoint={self.endpoint!r}, with_path_style={self.with_path_style})")


def read(path: str, format: str = "csv", *, aws_s3_settings: Optional[AwsS3Settings] = None, schema=None,
         mode: str = "streaming", csv_settings=None, autocommit_duration_ms=1500, name=None, persistent_id=None,
         skip_bad_rows=False, **kwargs):
    settings = (aws_s3_settings or AwsS3Settings())._cpp()
    return fs_read(path, format, schema=schema, mode=mode, csv_settings=csv_settings,
                   autocommit_duration_ms=autocommit_duration_ms, name=name, persistent_id=persistent_id,
                   skip_bad_rows=skip_bad_rows, s3_settings=settings)
