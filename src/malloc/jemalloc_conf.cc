// jemalloc options of the executables that link jemalloc (CMakeLists.txt: TIDEMARK_MALLOC).
// Not part of the library: an application embedding Tidemark sets its own allocator options,
// and MALLOC_CONF in the environment overrides these at run time.
//
// lg_extent_max_active_fit:10 — reuse a cached free extent up to 1024x the size asked for
// (jemalloc's default: 64x). A time's rows are freed together, their slabs coalesce into large
// free extents, and with the default the next time's slabs do not fit in them: jemalloc maps
// fresh memory and every time's rows page-fault anew (the groupby benchmark with generated
// rows: 30k page faults per run, a third of its time in the kernel; none with this option).
//
// dirty_decay_ms:-1 — freed pages stay with the allocator for reuse instead of being returned
// to the kernel. jemalloc 5.3 purges a freed extent of 8 MiB or more at once whatever the decay
// time, so every batch array, file content and hash table of that size is page-faulted in again
// on its next allocation (wordcount over 10M words: 48k page faults, 16k with this option, and
// 15% less time). The cost: a process keeps the memory of its peak working set until it exits.
//
// The definition is weak so that an executable defining its own malloc_conf overrides it.
extern "C" {
__attribute__((weak)) const char* malloc_conf = "lg_extent_max_active_fit:10,dirty_decay_ms:-1";
}
