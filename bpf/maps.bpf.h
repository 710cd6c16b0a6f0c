/* Maps of the kernel data path. Sizes of the per-connection maps are set by the loader before load. */
#ifndef SKPROXY_BPF_MAPS_BPF_H_
#define SKPROXY_BPF_MAPS_BPF_H_

#include "skproxy.h"

/* Both legs of every kernel-path connection, keyed by their own 4-tuple. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct skp_key);
	__type(value, __u64);
} skp_socks SEC(".maps");

/* Per direction state, keyed like skp_socks by the socket the bytes arrive on. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct skp_key);
	__type(value, struct skp_dir);
} skp_dirs SEC(".maps");

/* User space's progress in copying passed bytes, one slot per direction (skp_dir.user_slot), written by
 * user space through a shared mapping. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct skp_user);
} skp_users SEC(".maps");

/* One notice ring per worker, indexed by skp_dir.worker. The loader sizes the inner ring and creates one
 * per worker: the verdict wakes only the worker that owns the connection. */
struct skp_notice_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096); /* set by the loader */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, SKP_MAX_WORKERS);
	__type(key, __u32);
	__array(values, struct skp_notice_ring);
} skp_notices SEC(".maps");

/* Legs of held connections that ask to leave the sockhash (enum skp_leave_mark), per socket: user space
 * writes it keyed by the descriptor, the leave pass reads it for every TCP socket it walks. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} skp_leaving SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SKP_STATS_ENTRIES);
	__type(key, __u32);
	__type(value, __u64);
} skp_stats SEC(".maps");

#endif /* SKPROXY_BPF_MAPS_BPF_H_ */
