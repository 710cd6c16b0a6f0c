/* Types shared by the BPF programs and the C++ control plane: the one definition of every map key and value.
 * Included from BPF (after vmlinux.h) and from C++ (after <linux/types.h>). */
#ifndef SKPROXY_BPF_SKPROXY_H_
#define SKPROXY_BPF_SKPROXY_H_

#ifndef __bpf__
#include <linux/types.h>
#endif

/* A socket's own 4-tuple as the verdict program sees it in struct __sk_buff and user space sees it with
 * getsockname/getpeername. Addresses in network byte order (IPv4 in ip[0], the rest zero), ports in host
 * byte order. A v4-mapped IPv6 socket is AF_INET6 with ::ffff:a.b.c.d on both sides. */
struct skp_key {
	__u32 family;
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u32 local_port;
	__u32 remote_port;
};

enum skp_direction {
	SKP_DOWNSTREAM_TO_UPSTREAM = 0, /* bytes from the client to the upstream */
	SKP_UPSTREAM_TO_DOWNSTREAM = 1,
	SKP_DIRECTIONS = 2,
};

enum skp_dir_flags {
	SKP_F_USER_MODE = 1 << 0, /* the gate is passing this direction's bytes to user space */
	SKP_F_SEQ_INIT = 1 << 1,  /* next_seq holds the end of the last skb seen */
	SKP_F_WSEQ_INIT = 1 << 2, /* peer_wseq_base holds the peer's write_seq at the first verdict */
	SKP_F_BROKEN = 1 << 3,    /* a trim fell short: every later skb is dropped and user space resets */
};

/* One direction of a connection: bytes that arrive on the socket `skp_dirs` is keyed by and leave through
 * `peer`. Written only by the verdict program once inserted (user space writes it once, before inserting). */
struct skp_dir {
	struct skp_key peer;
	__u32 direction;      /* enum skp_direction, for the counters */
	__u32 flags;          /* enum skp_dir_flags */
	__u64 gate_limit;     /* peer write queue + psock backlog + this skb above this: hand over to user space */
	__u32 peer_wseq_base; /* peer tcp_sock.write_seq at the first verdict: what entered it since is ours */
	__u32 next_seq;       /* TCP sequence right after the last byte seen: older bytes are a retransmission */
	__u32 trim_left;      /* scratch of the trim: old bytes still to remove from the current skb */
	__u32 reserved;
	__u32 user_slot;      /* this direction's entry in skp_users */
	__u32 worker;         /* index in skp_notices of the ring of the worker that owns the connection */
};

/* What the verdict and user space tell each other about one direction, in an mmapable array shared by
 * both, so that neither side needs a syscall to read or publish it. Each field has one writer. */
struct skp_user {
	__u64 copied;     /* user space: passed bytes it has written to the peer */
	__u32 armed;      /* user space sets it when it stops watching the source; the verdict clears it
			   * (atomic exchange) when it passes a byte, and then posts one notice */
	__u32 hold;       /* user space: pass every byte to user space, whatever the gate says (a connection
			   * demoted to the user-space path stays in the map with both directions held) */
	__u64 passed;     /* verdict: bytes passed to user space (to be copied by it to the peer) */
	__u64 redirected; /* verdict: bytes redirected to the peer */
	__u64 passed_skbs;     /* verdict: skbs passed, so that user space can tell small messages from bulk */
	__u64 redirected_skbs; /* verdict: skbs redirected */
};

/* A held connection's leg asking to leave the sockhash: the low 32 bits of its skp_leaving value (user
 * space writes ASKED, the leave pass sets DONE once it has taken the leg out); the high 32 bits are the
 * thread id of the worker that asked. Only that worker's own pass takes the leg out: another worker's pass
 * could otherwise delete it after the owner had given up and gone back to reading, unseen. */
enum skp_leave_mark {
	SKP_LEAVE_ASKED = 1,
	SKP_LEAVE_DONE = 2,
};

/* One record in a worker's notice ring: direction `slot` needs user space. */
enum skp_notice_kind {
	SKP_NOTICE_PASSED = 0, /* the gate passed bytes to user space while it was not watching */
	SKP_NOTICE_BROKEN = 1, /* a trim fell short: the connection must be reset */
};

struct skp_notice {
	__u32 slot;
	__u32 kind;
};

/* At most this many workers (notice rings). */
#define SKP_MAX_WORKERS 256

/* Per-CPU counters, index = direction * SKP_STAT_COUNT + stat. */
enum skp_stat {
	SKP_STAT_REDIRECTED_BYTES = 0,
	SKP_STAT_PASSED_BYTES,
	SKP_STAT_GATE_ENTER,       /* direction switched from redirect to user mode */
	SKP_STAT_GATE_EXIT,        /* and back */
	SKP_STAT_TRIMMED_BYTES,    /* retransmitted bytes removed from the head of a partly-old skb */
	SKP_STAT_OLD_SKBS_DROPPED, /* wholly-old skbs (all bytes seen before) */
	SKP_STAT_TRIM_SHORT,       /* the trim fell short (helper error, old head over the bound): dropped, reset */
	SKP_STAT_BROKEN_DROPS,     /* skbs dropped on a direction whose trim fell short, before the reset */
	SKP_STAT_REDIRECT_ERRORS,  /* peer vanished between lookup and redirect: passed instead */
	SKP_STAT_NO_STATE,         /* skb on a socket with no skp_dirs entry (insertion in progress) */
	SKP_STAT_NOTICES,          /* notices posted to a worker's ring */
	SKP_STAT_NOTICES_LOST,     /* a notice ring was full or missing (user space's sweep recovers) */
	SKP_STAT_COUNT,
};

#define SKP_STATS_ENTRIES (SKP_DIRECTIONS * SKP_STAT_COUNT)

#endif /* SKPROXY_BPF_SKPROXY_H_ */
