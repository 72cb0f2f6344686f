"""pw.persistence: where state is kept and how a run resumes or replays (as the reference's)."""
from __future__ import annotations

import enum
import os
from typing import Any, Optional

from . import _engine


class SnapshotAccess(enum.Enum):
    FULL = "full"
    RECORD = "record"
    REPLAY = "replay"
    OFFSETS_ONLY = "offsets_only"
    OFFLINE_REPLAY = "offline_replay"


class PersistenceMode(enum.Enum):
    BATCH = "batch"
    SPEEDRUN_REPLAY = "speedrun_replay"
    REALTIME_REPLAY = "realtime_replay"
    PERSISTING = "persisting"
    SELECTIVE_PERSISTING = "selective_persisting"
    UDF_CACHING = "udf_caching"
    OPERATOR_PERSISTING = "operator_persisting"


SnapshotEvent = _engine.SnapshotEvent


class Backend:
    """The storage of a persistent run: Backend.filesystem(path), .s3(root_path, bucket_settings),
    .azure(root_path, account, password, container), .mock(events), .memory()."""

    def __init__(self, engine_data_storage, fs_path: Optional[str] = None, kind: str = "custom"):
        self._cpp = engine_data_storage
        self.fs_path = fs_path
        self.kind = kind

    @classmethod
    def filesystem(cls, path) -> "Backend":
        path = os.fspath(path)
        return cls(_engine.Backend.filesystem(path), fs_path=path, kind="filesystem")

    @classmethod
    def s3(cls, root_path: str, bucket_settings) -> "Backend":
        root = root_path
        settings = bucket_settings
        if root.startswith("s3://"):
            rest = root[len("s3://"):]
            bucket, _, root = rest.partition("/")
            if settings.bucket_name is None:
                from .io.s3 import AwsS3Settings
                settings = AwsS3Settings(bucket_name=bucket, access_key=settings.access_key,
                                         secret_access_key=settings.secret_access_key,
                                         with_path_style=settings.with_path_style, region=settings.region,
                                         endpoint=settings.endpoint, session_token=settings.session_token)
        return cls(_engine.Backend.s3(root, settings._cpp()), kind="s3")

    @classmethod
    def azure(cls, root_path: str, account: str, password: str, container: str, endpoint: str = "") -> "Backend":
        return cls(_engine.Backend.azure(root_path, account, password, container, endpoint or ""), kind="azure")

    @classmethod
    def mock(cls, events: dict) -> "Backend":
        """events: {name or (name, worker_id): [SnapshotEvent, ...]}."""
        ev = {}
        for k, v in events.items():
            name = k[0] if isinstance(k, tuple) else k
            ev.setdefault(name, []).extend(v)
        return cls(_engine.Backend.mock(ev), kind="mock")

    @classmethod
    def memory(cls) -> "Backend":
        """In-process storage shared by the runs of this process that use this Backend."""
        return cls(_engine.Backend.memory(), kind="memory")

    def __repr__(self):
        return f"pw.persistence.Backend({self._cpp.describe()})"


class Config:
    """Persistence configuration, passed as pw.run(persistence_config=...).

    Config(backend, *, snapshot_interval_ms=0, ...) or, as in the older API,
    Config(metadata_storage=..., snapshot_storage=..., ...)."""

    def __init__(self, backend: Optional[Backend] = None, *, snapshot_interval_ms: int = 0,
                 metadata_storage: Optional[Backend] = None, snapshot_storage: Optional[Backend] = None,
                 snapshot_access: SnapshotAccess = SnapshotAccess.FULL,
                 persistence_mode: PersistenceMode = PersistenceMode.PERSISTING,
                 continue_after_replay: bool = True, worker_scaling_enabled: bool = False,
                 workload_tracking_window_ms: int = 120000, lock_lease_ms: int = 60000):
        if backend is not None:
            metadata_storage = metadata_storage or backend
            snapshot_storage = snapshot_storage or backend
        if metadata_storage is None or snapshot_storage is None:
            raise ValueError("pw.persistence.Config needs a backend (or metadata_storage and snapshot_storage)")
        if not isinstance(snapshot_access, SnapshotAccess):
            snapshot_access = SnapshotAccess(snapshot_access)
        if not isinstance(persistence_mode, PersistenceMode):
            persistence_mode = PersistenceMode(persistence_mode)
        if int(snapshot_interval_ms) < 0:
            raise ValueError("snapshot_interval_ms must be >= 0")
        self.backend = backend
        self.metadata_storage = metadata_storage
        self.snapshot_storage = snapshot_storage
        self.snapshot_interval_ms = int(snapshot_interval_ms)
        self.snapshot_access = snapshot_access
        self.persistence_mode = persistence_mode
        self.continue_after_replay = bool(continue_after_replay)
        if int(lock_lease_ms) < 1000:
            raise ValueError("lock_lease_ms must be at least 1000 (the storage lock's lease)")
        # Tidemark's own: the lease of the storage lock (docs/format/layout-lock.md).
        self.lock_lease_ms = int(lock_lease_ms)
        self.worker_scaling_enabled = worker_scaling_enabled
        self.workload_tracking_window_ms = workload_tracking_window_ms

    @classmethod
    def simple_config(cls, backend: Backend, snapshot_interval_ms: int = 0,
                      snapshot_access: SnapshotAccess = SnapshotAccess.FULL,
                      persistence_mode: PersistenceMode = PersistenceMode.PERSISTING,
                      continue_after_replay: bool = True) -> "Config":
        return cls(metadata_storage=backend, snapshot_storage=backend, snapshot_interval_ms=snapshot_interval_ms,
                   snapshot_access=snapshot_access, persistence_mode=persistence_mode,
                   continue_after_replay=continue_after_replay)

    def _cpp(self):
        return _engine.make_config(self.metadata_storage._cpp, self.snapshot_storage._cpp, self.snapshot_interval_ms,
                                   self.snapshot_access.value, self.persistence_mode.value,
                                   self.continue_after_replay, self.lock_lease_ms)

    def __repr__(self):
        return (f"pw.persistence.Config(metadata_storage={self.metadata_storage!r}, "
                f"snapshot_storage={self.snapshot_storage!r}, snapshot_interval_ms={self.snapshot_interval_ms}, "
                f"snapshot_access={self.snapshot_access}, persistence_mode={self.persistence_mode}, "
                f"continue_after_replay={self.continue_after_replay})")
