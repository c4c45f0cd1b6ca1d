#include "server/approvals/memory_approvals.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/base/digest.h"

namespace toolgate {
void SetMillis(int64_t ms, google::protobuf::Timestamp* t) {
  t->set_seconds(ms / 1000);
  t->set_nanos(static_cast<int32_t>(ms % 1000) * 1'000'000);
}

std::string BindingKey(const ApprovalBinding& b) {
  // Length-prefixed parts: no two bindings share a key.
  const absl::string_view parts[] = {b.grant, b.tool, b.server, b.session, b.args_digest};
  std::string joined;
  for (absl::string_view p : parts) absl::StrAppend(&joined, p.size(), ":", p, ";");
  return Sha256Hex(joined);
}

bool MemoryApprovalStore::Record::open() const {
  return approval.state() == v1::APPROVAL_STATE_PENDING ||
         approval.state() == v1::APPROVAL_STATE_APPROVED;
}

MemoryApprovalStore::MemoryApprovalStore(const Clock* clock, ApprovalLimits limits,
                                         ApprovalEvents events, int64_t sweep_ms)
    : clock_(clock), limits_(limits), events_(std::move(events)), sweep_ms_(sweep_ms) {
  if (sweep_ms_ > 0) sweeper_ = std::thread([this] { RunSweeper(); });
}

MemoryApprovalStore::~MemoryApprovalStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (sweeper_.joinable()) sweeper_.join();
}

void MemoryApprovalStore::RunSweeper() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(sweep_ms_));
    if (stopping_) break;
    std::vector<Event> events;
    SweepLocked(clock_->NowMillis(), &events);
    if (events.empty()) continue;
    mu_.Unlock();
    Emit(events);
    mu_.Lock();
  }
}

void MemoryApprovalStore::SweepNow() {
  std::vector<Event> events;
  {
    absl::MutexLock lock(&mu_);
    SweepLocked(clock_->NowMillis(), &events);
  }
  Emit(events);
}

size_t MemoryApprovalStore::size() const {
  absl::MutexLock lock(&mu_);
  return records_.size();
}

v1::Approval MemoryApprovalStore::View(const Record& r, int64_t now) const {
  v1::Approval a = r.approval;
  if (r.open() && now >= r.expires_ms) a.set_state(v1::APPROVAL_STATE_EXPIRED);
  return a;
}

void MemoryApprovalStore::Close(Record& r) {
  if (!r.open()) return;
  --open_;
  auto it = open_by_grant_.find(r.approval.grant());
  if (it != open_by_grant_.end() && --it->second <= 0) open_by_grant_.erase(it);
}

void MemoryApprovalStore::SweepLocked(int64_t now, std::vector<Event>* events) {
  last_sweep_ = now;
  // Oldest first: expiries are recorded, records past retention forgotten.
  for (auto it = order_.begin(); it != order_.end();) {
    auto rec = records_.find(it->second);
    if (rec == records_.end()) {
      it = order_.erase(it);
      continue;
    }
    Record& r = rec->second;
    if (r.open() && now >= r.expires_ms) {
      Close(r);
      r.approval.set_state(v1::APPROVAL_STATE_EXPIRED);
      events->emplace_back(v1::APPROVAL_EVENT_EXPIRED, r.approval);
    }
    if (!r.open() && now >= r.expires_ms + limits_.retention_ms) {
      if (auto b = by_binding_.find(r.binding_key); b != by_binding_.end() && b->second == it->second) {
        by_binding_.erase(b);
      }
      records_.erase(rec);
      it = order_.erase(it);
      continue;
    }
    ++it;
  }
}

void MemoryApprovalStore::Emit(std::vector<Event>& events) {
  for (const Event& e : events) {
    if (events_.local) events_.local(e.first, e.second);
    if (events_.fleet) events_.fleet(e.first, e.second);
  }
}

void MemoryApprovalStore::Create(NewApproval in, Callback<CreatedApproval> done) {
  const int64_t now = clock_->NowMillis();
  std::vector<Event> events;
  absl::StatusOr<CreatedApproval> result;
  {
    absl::MutexLock lock(&mu_);
    // Expiries free room under the bounds: recorded at most every 100 ms
    // here (a sweep walks every record), and every sweep_ms by the sweeper.
    if (now - last_sweep_ >= 100) SweepLocked(now, &events);
    const std::string key = BindingKey(in.binding);
    if (auto b = by_binding_.find(key); b != by_binding_.end()) {
      if (auto r = records_.find(b->second); r != records_.end() && r->second.open() &&
                                             now < r->second.expires_ms) {
        result = CreatedApproval{View(r->second, now), false};
      }
    }
    if (!result.ok() || result->approval.id().empty()) {
      const auto grant_open = open_by_grant_.find(in.binding.grant);
      if (open_ >= limits_.max_open) {
        result = absl::ResourceExhaustedError(absl::StrCat(
            limits_.max_open, " approvals are open already (--max-open-approvals)"));
      } else if (grant_open != open_by_grant_.end() &&
                 grant_open->second >= limits_.max_open_per_grant) {
        result = absl::ResourceExhaustedError(
            absl::StrCat("this grant has ", limits_.max_open_per_grant,
                         " approvals open already (--max-open-approvals-per-grant)"));
      } else {
        // Past max_records, the oldest closed records are forgotten first.
        for (auto it = order_.begin();
             static_cast<int64_t>(records_.size()) >= limits_.max_records() && it != order_.end();) {
          auto old = records_.find(it->second);
          if (old != records_.end() && old->second.open()) {
            ++it;
            continue;
          }
          if (old != records_.end()) {
            if (auto b = by_binding_.find(old->second.binding_key);
                b != by_binding_.end() && b->second == it->second) {
              by_binding_.erase(b);
            }
            records_.erase(old);
          }
          it = order_.erase(it);
        }
        Record r;
        v1::Approval& a = r.approval;
        a.set_id(NewApprovalId());
        a.set_state(v1::APPROVAL_STATE_PENDING);
        a.set_grant(in.binding.grant);
        a.set_tool(in.binding.tool);
        a.set_server(in.binding.server);
        a.set_session(in.binding.session);
        a.set_args_digest(in.binding.args_digest);
        a.set_args_json(std::move(in.args_json));
        a.set_rule(std::move(in.rule));
        a.set_reason(std::move(in.reason));
        a.set_policy_version(std::move(in.policy_version));
        a.set_request_id(std::move(in.request_id));
        r.created_ms = now;
        r.expires_ms = now + in.ttl_ms;
        SetMillis(r.created_ms, a.mutable_created_at());
        SetMillis(r.expires_ms, a.mutable_expires_at());
        r.binding_key = key;
        by_binding_[key] = a.id();
        order_.emplace(std::make_pair(now, ++sequence_), a.id());
        ++open_;
        ++open_by_grant_[a.grant()];
        events.emplace_back(v1::APPROVAL_EVENT_CREATED, a);
        result = CreatedApproval{a, true};
        records_.emplace(a.id(), std::move(r));
      }
    }
  }
  Emit(events);
  std::move(done)(std::move(result));
}

void MemoryApprovalStore::Redeem(std::string id, ApprovalBinding b, std::string decision_id,
                                 bool dry_run, Callback<RedeemResult> done) {
  const int64_t now = clock_->NowMillis();
  std::vector<Event> events;
  RedeemResult out;
  {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end()) {
      out.outcome = RedeemOutcome::kNotFound;
    } else {
      Record& r = it->second;
      const v1::Approval& a = r.approval;
      const std::pair<absl::string_view, bool> checks[] = {
          {"grant", a.grant() == b.grant},
          {"tool", a.tool() == b.tool},
          {"server", a.server() == b.server},
          {"session", a.session() == b.session},
          {"arguments", a.args_digest() == b.args_digest}};
      for (const auto& [field, same] : checks) {
        if (!same) {
          out.outcome = RedeemOutcome::kMismatch;
          out.field = std::string(field);
          out.approval.set_id(a.id());
          break;
        }
      }
      if (out.outcome != RedeemOutcome::kMismatch) {
        out.approval = View(r, now);
        switch (out.approval.state()) {
          case v1::APPROVAL_STATE_PENDING:
            out.outcome = RedeemOutcome::kPending;
            break;
          case v1::APPROVAL_STATE_DENIED:
            out.outcome = RedeemOutcome::kDenied;
            break;
          case v1::APPROVAL_STATE_EXPIRED:
            out.outcome = RedeemOutcome::kExpired;
            break;
          case v1::APPROVAL_STATE_USED:
            out.outcome = RedeemOutcome::kUsed;
            break;
          default:
            out.outcome = RedeemOutcome::kRedeemed;
            if (!dry_run) {
              Close(r);
              r.approval.set_state(v1::APPROVAL_STATE_USED);
              SetMillis(now, r.approval.mutable_used_at());
              r.approval.set_used_by_decision(decision_id);
              out.approval = r.approval;
              events.emplace_back(v1::APPROVAL_EVENT_USED, r.approval);
            }
        }
      }
    }
  }
  Emit(events);
  std::move(done)(std::move(out));
}

void MemoryApprovalStore::Release(std::string id, std::string decision_id, Callback<bool> done) {
  std::move(done)(ReleaseNow(id, decision_id));
}

bool MemoryApprovalStore::ReleaseNow(const std::string& id, const std::string& decision_id) {
  const int64_t now = clock_->NowMillis();
  absl::MutexLock lock(&mu_);
  auto it = records_.find(id);
  if (it == records_.end()) return false;
  Record& r = it->second;
  if (r.approval.state() != v1::APPROVAL_STATE_USED ||
      r.approval.used_by_decision() != decision_id) {
    return false;
  }
  r.approval.set_state(v1::APPROVAL_STATE_APPROVED);
  r.approval.clear_used_at();
  r.approval.clear_used_by_decision();
  // Open again (counted against the bounds, which it was under a moment ago).
  ++open_;
  ++open_by_grant_[r.approval.grant()];
  if (now >= r.expires_ms) {
    Close(r);
    r.approval.set_state(v1::APPROVAL_STATE_EXPIRED);
  }
  return true;
}

void MemoryApprovalStore::Decide(std::string id, bool approve, std::string approver,
                                 std::string note, Callback<v1::Approval> done) {
  const int64_t now = clock_->NowMillis();
  std::vector<Event> events;
  absl::StatusOr<v1::Approval> result;
  {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end()) {
      result = absl::NotFoundError(absl::StrCat("approval ", id, " is unknown"));
    } else {
      Record& r = it->second;
      const v1::Approval view = View(r, now);
      if (view.state() != v1::APPROVAL_STATE_PENDING) {
        result = absl::FailedPreconditionError(
            absl::StrCat("approval ", id, " is ", ApprovalStateName(view.state()),
                         view.decided_by().empty()
                             ? std::string()
                             : absl::StrCat(" (decided by ", view.decided_by(), ")"),
                         ", not pending"));
      } else {
        if (!approve) Close(r);  // A denial closes it (Close reads the pending state).
        r.approval.set_state(approve ? v1::APPROVAL_STATE_APPROVED : v1::APPROVAL_STATE_DENIED);
        SetMillis(now, r.approval.mutable_decided_at());
        r.approval.set_decided_by(std::move(approver));
        r.approval.set_note(std::move(note));
        events.emplace_back(approve ? v1::APPROVAL_EVENT_APPROVED : v1::APPROVAL_EVENT_DENIED,
                            r.approval);
        result = r.approval;
      }
    }
  }
  Emit(events);
  std::move(done)(std::move(result));
}

void MemoryApprovalStore::Get(std::string id, Callback<v1::Approval> done) {
  absl::StatusOr<v1::Approval> result;
  {
    absl::MutexLock lock(&mu_);
    auto it = records_.find(id);
    if (it == records_.end()) {
      result = absl::NotFoundError(absl::StrCat("approval ", id, " is unknown"));
    } else {
      result = View(it->second, clock_->NowMillis());
    }
  }
  std::move(done)(std::move(result));
}

void MemoryApprovalStore::List(ApprovalFilter filter, Callback<std::vector<v1::Approval>> done) {
  std::vector<v1::Approval> out;
  {
    absl::MutexLock lock(&mu_);
    const int64_t now = clock_->NowMillis();
    int scanned = 0;
    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
      if (static_cast<int>(out.size()) >= filter.limit || ++scanned > kListScan) break;
      auto r = records_.find(it->second);
      if (r == records_.end()) continue;
      v1::Approval a = View(r->second, now);
      if (filter.state != v1::APPROVAL_STATE_UNSPECIFIED && a.state() != filter.state) continue;
      if (!filter.grant.empty() && a.grant() != filter.grant) continue;
      if (!filter.tool.empty() && a.tool() != filter.tool) continue;
      out.push_back(std::move(a));
    }
  }
  std::move(done)(std::move(out));
}

}  // namespace toolgate
