#include "proxy/http_pool.h"

#include <poll.h>

#include <algorithm>

#include "proxy/cluster_manager.h"
#include "proxy/tracked_handler.h"

namespace skproxy {

class HttpPool::Idle final : public TrackedHandler {
 public:
  Idle(HttpPool& pool, Ring& ring, std::shared_ptr<ClusterManager> owner, ClusterState& cluster,
       std::shared_ptr<EndpointState> endpoint, UniqueFd fd)
      : TrackedHandler(ring), pool_(pool), owner_(std::move(owner)), cluster_(cluster), endpoint_(std::move(endpoint)),
        fd_(std::move(fd)) {}

  void Watch() {
    const absl::Duration timeout = cluster_.config().http_keepalive.idle_timeout;
    timeout_.tv_sec = absl::ToInt64Seconds(timeout);
    timeout_.tv_nsec = absl::ToInt64Nanoseconds(timeout - absl::Seconds(timeout_.tv_sec));
    io_uring_sqe* sqe = Submit(0);
    io_uring_prep_poll_add(sqe, fd_.get(), POLLIN | POLLRDHUP);
    sqe->flags |= IOSQE_IO_LINK;
    io_uring_prep_link_timeout(ring_.PrepareUntracked(), &timeout_, 0);
  }
  // Taken: the poll is cancelled (its completion, -ECANCELED or a late event, then frees this).
  UniqueFd Take() {
    listed_ = false;
    io_uring_prep_cancel64(ring_.PrepareUntracked(), reinterpret_cast<uint64_t>(static_cast<IoHandler*>(this)), 0);
    return std::move(fd_);
  }

  ClusterState& cluster() { return cluster_; }
  const EndpointState* endpoint() const { return endpoint_.get(); }
  bool listed() const { return listed_; }

 private:
  void Handle(unsigned, int, unsigned) override {
    // Whatever woke the poll (FIN, RST, bytes nobody asked for, the idle timeout) ends a listed connection.
    if (listed_) {
      pool_.Remove(this);
      listed_ = false;
      fd_.Reset();
    }
    pool_.Retire(this);
  }

  HttpPool& pool_;
  std::shared_ptr<ClusterManager> owner_;
  ClusterState& cluster_;
  std::shared_ptr<EndpointState> endpoint_;  // kept while pooled: DNS may drop it from the cluster meanwhile
  UniqueFd fd_;
  bool listed_ = true;
  __kernel_timespec timeout_{};
};

HttpPool::~HttpPool() {
  for (Idle* idle : all_) {
    if (idle->listed()) idle->cluster().metrics().pool_idle->Decrement();
    delete idle;
  }
}

UniqueFd HttpPool::Take(const EndpointState& endpoint) {
  auto it = idle_.find(&endpoint);
  if (it == idle_.end() || it->second.empty()) return UniqueFd();
  Idle* idle = it->second.back();
  Remove(idle);
  return idle->Take();
}

void HttpPool::Put(std::shared_ptr<ClusterManager> owner, ClusterState& cluster,
                   std::shared_ptr<EndpointState> endpoint, UniqueFd fd) {
  const uint32_t max = cluster.config().http_keepalive.max_idle;
  if (max == 0) return;
  std::deque<Idle*>& lru = lru_[&cluster];
  if (lru.size() >= max) Close(lru.front());
  const EndpointState* key = endpoint.get();
  auto* idle = new Idle(*this, ring_, std::move(owner), cluster, std::move(endpoint), std::move(fd));
  all_.insert(idle);
  idle_[key].push_back(idle);
  lru_[&cluster].push_back(idle);
  ++idle_count_;
  cluster.metrics().pool_idle->Increment();
  idle->Watch();
}

void HttpPool::Remove(Idle* idle) {
  auto erase = [idle](auto& map, const auto& key) {
    auto it = map.find(key);
    if (it == map.end()) return;
    std::deque<Idle*>& list = it->second;
    list.erase(std::find(list.begin(), list.end(), idle));
    if (list.empty()) map.erase(it);  // no key outlives the cluster it points to
  };
  erase(idle_, idle->endpoint());
  erase(lru_, &idle->cluster());
  --idle_count_;
  idle->cluster().metrics().pool_idle->Decrement();
}

void HttpPool::Close(Idle* idle) {
  Remove(idle);
  idle->Take();  // the fd closes here; the poll's cancellation frees the Idle
}

void HttpPool::Retire(Idle* idle) {
  if (idle->inflight() != 0) return;
  all_.erase(idle);
  delete idle;  // its Handle returns right after this, touching nothing
}

}  // namespace skproxy
