// SPDX-License-Identifier: GPL-2.0
/* The kernel data path: an sk_skb stream verdict that moves each skb from the socket it arrived on to the
 * egress of the connection's other leg, with a gate that hands a congested direction to user space.
 *
 * Why a gate: egress redirect has no flow control. Redirected skbs wait in the peer's psock backlog,
 * uncharged from the sender's receive buffer, so a slow reader lets the whole stream pile up in kernel memory
 * and deleting or shutting the peer down while it holds bytes drops them. The gate keeps
 * (peer write queue + backlog) under gate_limit; above it, skbs are PASSed to the arriving socket's
 * receive queue, where they are charged to its receive buffer, so its window closes and the sender slows.
 * User space copies them (after the backlog has drained, so order holds) and publishes its count; the
 * program redirects again only when every passed byte has been copied and the peer has room.
 *
 * Why the trim: without a stream parser tcp_read_skb() hands a partly-old skb (a retransmission merged with
 * new bytes) whole to this program; its old head would go out twice. We remember where each direction's
 * stream has got to and cut the old head with bpf_skb_adjust_room. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "maps.bpf.h"

#define SK_DROP 0
#define SK_PASS 1
#define AF_INET 2
#define AF_INET6 10

/* bpf_skb_adjust_room removes at most this many bytes per call on sk_skb. */
#define SKP_TRIM_CHUNK 4095

/* Calls the trim may make per skb, set by the loader from the configured receive buffer: an old head is
 * bytes the peer retransmitted, so it is never larger than the window we advertised. */
const volatile __u32 trim_max_calls = 256;

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

static __always_inline void stat_add(__u32 direction, __u32 stat, __u64 value)
{
	__u32 index = direction * SKP_STAT_COUNT + stat;
	__u64 *counter;

	if (index >= SKP_STATS_ENTRIES)
		return;
	counter = bpf_map_lookup_elem(&skp_stats, &index);
	if (counter)
		*counter += value;
}

/* Mirrors SocketKey() in socket_key.cc; tests check both against each other for IPv4 and IPv6. */
static __always_inline void key_from_skb(struct __sk_buff *skb, struct skp_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->family = skb->family;
	if (skb->family == AF_INET6) {
		key->local_ip[0] = skb->local_ip6[0];
		key->local_ip[1] = skb->local_ip6[1];
		key->local_ip[2] = skb->local_ip6[2];
		key->local_ip[3] = skb->local_ip6[3];
		key->remote_ip[0] = skb->remote_ip6[0];
		key->remote_ip[1] = skb->remote_ip6[1];
		key->remote_ip[2] = skb->remote_ip6[2];
		key->remote_ip[3] = skb->remote_ip6[3];
	} else {
		key->local_ip[0] = skb->local_ip4;
		key->remote_ip[0] = skb->remote_ip4;
	}
	key->local_port = skb->local_port;                     /* host order already */
	key->remote_port = bpf_ntohs(skb->remote_port >> 16);  /* network order in the upper 16 bits */
}

/* Where this direction's stream stood when the socket entered the map: user space may have read part of
 * the skb now at the head of the queue, and tcp_read_skb() hands that skb over whole, so
 * the first verdict must start from the socket's copied_seq, not from the skb. The socket comes from the
 * skb itself (tcp_read_skb sets skb->sk): the first verdict can run before the socket's own sockhash
 * element exists, since the psock is attached before the element is linked. */
static __always_inline __u32 stream_start(struct sk_buff *kskb, __u32 skb_seq)
{
	struct sock *sk = kskb->sk;
	struct tcp_sock *tp;

	if (!sk)
		return skb_seq;
	/* Only TCP sockets are ever inserted; a read-only cast is enough to load one field. */
	tp = bpf_rdonly_cast(sk, bpf_core_type_id_kernel(struct tcp_sock));
	return tp->copied_seq;
}

struct trim_ctx {
	struct __sk_buff *skb;
	struct skp_dir *dir;
};

/* One bpf_skb_adjust_room call of the trim, as a bpf_loop callback: the verifier checks it once, however
 * many calls the receive buffer needs. What is left lives in the map value, not on the stack, so the
 * verifier does not follow it call by call. Returns 1 (stop) when done or when the helper fails. */
static long trim_chunk(__u32 index, void *data)
{
	struct trim_ctx *t = data;
	struct skp_dir *dir = t->dir;
	__u32 left = dir->trim_left;
	__u32 chunk = left > SKP_TRIM_CHUNK ? SKP_TRIM_CHUNK : left;

	if (chunk == 0 || bpf_skb_adjust_room(t->skb, -(__s32)chunk, 0, 0))
		return 1;
	dir->trim_left = left - chunk;
	return left == chunk;
}

/* Removes bytes this direction has already seen (or user space already read) from the head of skb.
 * Returns SK_PASS to go on with the (possibly trimmed) skb, SK_DROP if the skb holds nothing new, and
 * -1 when the old head could not be removed whole: the skb must not go anywhere, since forwarding it
 * would repeat bytes, and the connection has to be reset. */
static __always_inline int trim_old_head(struct __sk_buff *skb, struct skp_dir *dir)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)&kskb->cb[0];
	__u32 seq = cb->seq, end_seq = cb->end_seq;
	__s32 old;

	if (!(dir->flags & SKP_F_SEQ_INIT)) {
		dir->next_seq = stream_start(kskb, seq);
		dir->flags |= SKP_F_SEQ_INIT;
	}
	old = (__s32)(dir->next_seq - seq);
	if (old > 0) {
		struct trim_ctx t = {.skb = skb, .dir = dir};

		if ((__s32)(end_seq - dir->next_seq) <= 0) {
			stat_add(dir->direction, SKP_STAT_OLD_SKBS_DROPPED, 1);
			return SK_DROP;
		}
		dir->trim_left = old;
		bpf_loop(trim_max_calls, trim_chunk, &t, 0);
		stat_add(dir->direction, SKP_STAT_TRIMMED_BYTES, old - dir->trim_left);
		if (dir->trim_left)
			return -1;
	}
	if ((__s32)(end_seq - dir->next_seq) > 0)
		dir->next_seq = end_seq;
	return SK_PASS;
}

/* Posts a notice to the ring of the worker that owns the connection. A lost notice is counted; user
 * space's periodic sweep finds the direction anyway. */
static __always_inline void notify(struct skp_dir *dir, __u32 kind)
{
	struct skp_notice notice = {.slot = dir->user_slot, .kind = kind};
	__u32 worker = dir->worker;
	void *ring = bpf_map_lookup_elem(&skp_notices, &worker);

	if (ring && bpf_ringbuf_output(ring, &notice, sizeof(notice), 0) == 0)
		stat_add(dir->direction, SKP_STAT_NOTICES, 1);
	else
		stat_add(dir->direction, SKP_STAT_NOTICES_LOST, 1);
}

/* Bytes queued towards the peer that are ours: its write queue plus our psock backlog. */
static __always_inline __u64 peer_pending(struct skp_dir *dir, struct skp_user *user, struct bpf_sock *peer,
					 __u64 user_copied)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(peer);
	__u32 write_seq, entered;
	__s32 backlog;

	if (!tp)
		return 0;
	write_seq = tp->write_seq;
	if (!(dir->flags & SKP_F_WSEQ_INIT)) {
		dir->peer_wseq_base = write_seq;
		dir->flags |= SKP_F_WSEQ_INIT;
	}
	/* Everything that entered the peer's write queue since the first verdict came from us (redirected or
	 * copied by user space), so what we sent minus what entered is still in the backlog. 32-bit serial
	 * arithmetic: the backlog is far below 2 GiB; a copy not yet published can make it briefly negative. */
	entered = write_seq - dir->peer_wseq_base;
	backlog = (__s32)((__u32)(user->redirected + user_copied) - entered);
	if (backlog < 0)
		backlog = 0;
	return (__u64)tp->inet_conn.icsk_inet.sk.sk_wmem_queued + (__u32)backlog;
}

/* Hands the skb to user space. User space does not watch a source whose bytes the verdict redirects (it
 * would be woken for every skb): when it has stopped watching (armed), the first pass posts a notice.
 * User space stores `armed`, then loads `passed`; here `passed` is stored, then `armed` is read. Each side
 * needs a full barrier between its store and its load, or both can miss the other's store (a lost
 * wake-up): the exchange is that barrier, so it is done whether or not the flag is set. */
static __always_inline int pass_to_user(struct skp_dir *dir, struct skp_user *user, __u32 len)
{
	if (!(dir->flags & SKP_F_USER_MODE)) {
		dir->flags |= SKP_F_USER_MODE;
		stat_add(dir->direction, SKP_STAT_GATE_ENTER, 1);
	}
	user->passed += len;
	user->passed_skbs++;
	stat_add(dir->direction, SKP_STAT_PASSED_BYTES, len);
	if (__sync_lock_test_and_set(&user->armed, 0))
		notify(dir, SKP_NOTICE_PASSED);
	return SK_PASS;
}

SEC("sk_skb/stream_verdict")
int skp_verdict(struct __sk_buff *skb)
{
	struct skp_key key, peer_key;
	struct skp_dir *dir;
	struct skp_user *user;
	__u32 slot;
	struct bpf_sock *peer;
	__u64 user_copied, pending;
	long ret;

	/* A FIN-only skb: redirected, the backlog's zero-byte send is a hard error on the peer. The FIN still
	 * reaches user space as EOF, which closes the other leg once the backlog has drained. */
	if (skb->len == 0)
		return SK_DROP;

	key_from_skb(skb, &key);
	dir = bpf_map_lookup_elem(&skp_dirs, &key);
	if (!dir) {
		stat_add(0, SKP_STAT_NO_STATE, 1);
		return SK_PASS;
	}
	if (dir->flags & SKP_F_BROKEN) {
		stat_add(dir->direction, SKP_STAT_BROKEN_DROPS, 1);
		return SK_DROP;
	}
	slot = dir->user_slot;
	user = bpf_map_lookup_elem(&skp_users, &slot);
	if (!user) {
		stat_add(dir->direction, SKP_STAT_NO_STATE, 1);
		return SK_PASS;
	}
	ret = trim_old_head(skb, dir);
	if (ret == SK_DROP)
		return SK_DROP;
	if (ret < 0) {
		dir->flags |= SKP_F_BROKEN;
		stat_add(dir->direction, SKP_STAT_TRIM_SHORT, 1);
		notify(dir, SKP_NOTICE_BROKEN);
		return SK_DROP;
	}

	/* A held direction (a connection on the user-space path, see proxy/path_switch.h) passes everything:
	 * the same user mode as the gate's, so the copy stays exact however the hold starts or ends. */
	if (*(volatile __u32 *)&user->hold)
		return pass_to_user(dir, user, skb->len);

	user_copied = *(volatile __u64 *)&user->copied;
	/* Stay in user mode until user space has written every byte passed so far: a redirect now would
	 * overtake them. */
	if ((dir->flags & SKP_F_USER_MODE) && user_copied < user->passed)
		return pass_to_user(dir, user, skb->len);

	__builtin_memcpy(&peer_key, &dir->peer, sizeof(peer_key));
	peer = bpf_map_lookup_elem(&skp_socks, &peer_key);
	if (!peer)
		return pass_to_user(dir, user, skb->len);
	pending = peer_pending(dir, user, peer, user_copied);
	bpf_sk_release(peer);
	if (pending + skb->len > dir->gate_limit)
		return pass_to_user(dir, user, skb->len);

	if (dir->flags & SKP_F_USER_MODE) {
		dir->flags &= ~SKP_F_USER_MODE;
		stat_add(dir->direction, SKP_STAT_GATE_EXIT, 1);
	}
	ret = bpf_sk_redirect_hash(skb, &skp_socks, &peer_key, 0);
	if (ret != SK_PASS) {
		/* The lookup failed, so no redirect was set up: deliver locally, user space copies it. */
		stat_add(dir->direction, SKP_STAT_REDIRECT_ERRORS, 1);
		return pass_to_user(dir, user, skb->len);
	}
	user->redirected += skb->len;
	user->redirected_skbs++;
	stat_add(dir->direction, SKP_STAT_REDIRECTED_BYTES, skb->len);
	return SK_PASS;
}

/* The leave pass: takes the legs of held connections that asked (skp_leaving) out of the sockhash, exactly.
 *
 * A delete from user space can race a data-ready: a segment that arrives between user space's last read and
 * the delete is passed into the psock and dropped with it. Both the data-ready and this program run under
 * the socket's lock (a TCP iterator locks each socket it hands over; segments that arrive meanwhile wait
 * in the socket's backlog), so here no verdict can run for this socket: if every byte the verdict passed
 * has been copied by user space, the psock holds nothing of this direction, and the delete loses nothing.
 * User space has made sure before asking that nothing redirected towards this socket is still in its
 * backlog, and that no verdict of the peer will redirect again (the connection is held). A leg whose
 * verdict passed more bytes meanwhile stays in: user space forgets its mark, copies them, and asks again
 * at its next sample. Runs for every TCP socket of the namespace; most have no mark and cost one lookup. Each
 * worker runs its own passes, for the legs it marked (the thread id in the mark). */
static __always_inline void key_from_sock(struct sock_common *skc, struct skp_key *key)
{
	__builtin_memset(key, 0, sizeof(*key));
	key->family = skc->skc_family;
	if (skc->skc_family == AF_INET6) {
		key->local_ip[0] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[0];
		key->local_ip[1] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[1];
		key->local_ip[2] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[2];
		key->local_ip[3] = skc->skc_v6_rcv_saddr.in6_u.u6_addr32[3];
		key->remote_ip[0] = skc->skc_v6_daddr.in6_u.u6_addr32[0];
		key->remote_ip[1] = skc->skc_v6_daddr.in6_u.u6_addr32[1];
		key->remote_ip[2] = skc->skc_v6_daddr.in6_u.u6_addr32[2];
		key->remote_ip[3] = skc->skc_v6_daddr.in6_u.u6_addr32[3];
	} else {
		key->local_ip[0] = skc->skc_rcv_saddr;
		key->remote_ip[0] = skc->skc_daddr;
	}
	key->local_port = skc->skc_num;                  /* host order */
	key->remote_port = bpf_ntohs(skc->skc_dport);
}

SEC("iter/tcp")
int skp_leave(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct skp_user *user;
	struct tcp_sock *tp;
	struct skp_dir *dir;
	struct skp_key key;
	__u64 *mark;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);  /* full sockets only: not request or time-wait sockets */
	if (!tp)
		return 0;
	mark = bpf_sk_storage_get(&skp_leaving, tp, 0, 0);
	if (!mark || (__u32)*mark != SKP_LEAVE_ASKED || (__u32)(*mark >> 32) != (__u32)bpf_get_current_pid_tgid())
		return 0;
	key_from_sock(skc, &key);
	dir = bpf_map_lookup_elem(&skp_dirs, &key);
	if (!dir)
		return 0;
	user = bpf_map_lookup_elem(&skp_users, &dir->user_slot);
	if (!user || *(volatile __u64 *)&user->copied != user->passed)
		return 0;
	if (bpf_map_delete_elem(&skp_socks, &key) == 0)
		*mark = SKP_LEAVE_DONE;  /* for the owner only: it forgets the mark next */
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
