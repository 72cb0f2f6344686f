// The persisted layout: manifests (commit points) and input snapshot chunks.
// Byte-level spec: docs/format/persistence.md. Constants live here and in
// storage/format_constants.h; record tags are never reused.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/node.h"
#include "storage/object_store.h"
#include "tidemark/persistence.h"

namespace tidemark::persistence {

// 2 added operator states, chunk levels and content objects; 3 added fencing (epoch, writer
// token), whole-object checksums of chunks and the list of content objects (versions 1 and 2
// are still read).
inline constexpr uint32_t kManifestFormatVersion = 3;
inline constexpr const char* kManifestPrefix = "manifests/";
inline constexpr const char* kStreamsPrefix = "streams/";
inline constexpr const char* kOperatorsPrefix = "operators/";  // state_store.h
inline constexpr const char* kContentsPrefix = "contents/";    // state_store.h

// Record tags inside chunks written by persistence.
inline constexpr uint8_t kRecordManifest = 0x10;  // JSON manifest body
inline constexpr uint8_t kRecordInsert = 0x01;    // key, row
inline constexpr uint8_t kRecordDelete = 0x02;    // key, row
inline constexpr uint8_t kRecordAdvance = 0x03;   // time u64, offset bytes
inline constexpr uint8_t kRecordFinished = 0x04;  // (empty)

struct ChunkRef {
  std::string key;
  uint64_t records = 0;
  uint64_t bytes = 0;  // size of the whole object, checked at every load
  uint64_t max_time = 0;
  uint32_t level = 0;  // 0: written by a commit; L+1: merged from chunks of level L
  uint32_t crc32c = 0;  // CRC32C of the whole object, checked at every load
  bool has_crc = false;  // false in manifests older than version 3
};

// An archived file content (operator persisting), listed so a load can check it and garbage
// collection never has to guess from a listing.
struct ContentRef {
  uint64_t hash = 0;  // xxh3-64 of the content (the source's name for it)
  std::string key;
  uint64_t bytes = 0;
  uint32_t crc32c = 0;
  bool has_crc = true;  // false for contents found by listing an older storage
};

// OK when `data` (the object `ref.key` as read from `store_name`) has the size and checksum
// the manifest recorded; Corruption naming the object otherwise.
Status check_chunk_object(const std::string& store_name, const ChunkRef& ref, std::string_view data);
ChunkRef make_chunk_ref(std::string key, std::string_view data, uint64_t records, uint64_t max_time,
                        uint32_t level = 0);

// The writer epoch a chunk, state-chunk or content key carries ("<epoch>-<n>" or
// "<hash>-<epoch>"), 0 for keys of older formats without one.
uint64_t epoch_of_key(const std::string& key);

struct SourceState {
  std::string id;        // persistent id (user name or generated)
  std::string schema;    // Schema::to_string() at record time
  std::string offset;    // the source's offset() at the committed time (raw bytes)
  bool has_offset = false;
  std::vector<ChunkRef> chunks;
  std::vector<ContentRef> contents;  // version 3: archived contents the offset refers to
};

// Persistent state of an operator (operator persisting) or a UDF cache: LSM-like chunks,
// oldest first (state_store.h).
struct OperatorState {
  std::string id;         // stable id: user name, or derived from graph position and inputs
  std::string kind;       // "groupby", "join", "udf_cache", ...
  std::string label;      // how the writer named it in messages (informational)
  std::string signature;  // kind, parameters and schema: must match on restart
  std::vector<ChunkRef> chunks;
};

struct SinkState {
  std::string id;
  std::string position;
};

struct Manifest {
  uint32_t format_version = kManifestFormatVersion;
  uint64_t seq = 0;             // commit number, strictly increasing across runs
  // The writer's epoch: the seq of the fencing commit it published when it took the storage
  // over. Every key the writer creates carries it, so two writers never share a key.
  uint64_t run = 0;
  std::string writer;           // the writer's lock token (version 3)
  uint64_t committed_time = 0;  // every event with time <= this is in the chunks below
  std::string mode;             // persistence mode of the writer (informational)
  // Worker threads of the writer (absent: 1). Informational: offsets are stored merged and
  // every operator-state entry is placed by its routing key, so any count may resume.
  uint64_t workers = 1;
  std::vector<SourceState> sources;
  std::vector<SinkState> sinks;
  std::vector<OperatorState> operators;

  const OperatorState* find_operator(const std::string& id) const;
  const SourceState* find_source(const std::string& id) const;
  const SinkState* find_sink(const std::string& id) const;
};

std::string manifest_key(uint64_t seq);
// "streams/<hash of id>/<epoch>-<seq>"
std::string chunk_key(const std::string& source_id, uint64_t run, uint64_t seq);
std::string stream_prefix(const std::string& source_id);

// Encodes as a chunk (magic, version, CRC) holding one JSON record. Names that are not valid
// UTF-8 are stored as hex beside a readable form. InvalidArgument when the manifest exceeds the
// record size limit.
Result<std::string> encode_manifest(const Manifest& m);
// Corruption naming `key` for damage; NotSupported for a newer format version.
Result<Manifest> decode_manifest(const std::string& key, std::string_view data);

// The newest manifest in `store`, or nullopt when there is none.
Result<std::optional<Manifest>> read_latest_manifest(storage::ObjectStore& store);

// One recorded input event.
struct InputEvent {
  uint8_t type = 0;  // kRecordInsert / kRecordDelete / kRecordAdvance / kRecordFinished
  engine::Update update;   // insert/delete (diff +1/-1 times multiplicity)
  uint64_t time = 0;       // advance
  std::string offset;      // advance
};

// Encoders for input events (payloads of chunk records).
std::string encode_update_payload(const engine::Update& u);
std::string encode_advance_payload(uint64_t time, std::string_view offset);
// Reads every event of a chunk; Corruption naming the key and byte offset on damage.
Status read_input_chunk(const std::string& key, std::string_view data, std::vector<InputEvent>* out);

// Writes a manifest and chunks holding `events` per source name (Backend::mock).
Status write_mock_state(storage::ObjectStore& store, const std::map<std::string, std::vector<SnapshotEvent>>& events);

}  // namespace tidemark::persistence
