#include "server/service/approval_service.h"

#include <algorithm>
#include <deque>
#include <memory>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/base/utf8.h"
#include "server/service/status_util.h"

namespace toolgate {
namespace {

// An approval id argument: INVALID_ARGUMENT unless of the form ids have.
absl::Status CheckId(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("id is required");
  if (!IsApprovalId(id)) {
    return absl::InvalidArgumentError("id: not an approval id (\"apr_\" and 32 hex digits)");
  }
  return absl::OkStatus();
}

// Free text from an approver: valid UTF-8, no control characters, bounded.
absl::Status CheckText(absl::string_view field, absl::string_view value, size_t max) {
  if (const Utf8Problem p = FindUtf8Problem(value, /*forbid_control=*/true); !p.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": ", DescribeUtf8Problem(p)));
  }
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", value.size(), " bytes, longer than ", max));
  }
  return absl::OkStatus();
}

bool Matches(const v1::WatchApprovalsRequest& f, const v1::Approval& a) {
  return (f.grant().empty() || a.grant() == f.grant()) && (f.tool().empty() || a.tool() == f.tool());
}

}  // namespace

grpc::ServerUnaryReactor* ApprovalServiceImpl::ListApprovals(
    grpc::CallbackServerContext* context, const v1::ListApprovalsRequest* request,
    v1::ListApprovalsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status s = AdmitAdmin(*context, callers_, token_).status();
  if (s.ok() && (request->limit() < 0 || request->limit() > kMaxListLimit)) {
    s = absl::InvalidArgumentError(
        absl::StrCat("limit must be from 0 (", kDefaultListLimit, ") to ", kMaxListLimit));
  }
  if (s.ok()) s = CheckText("grant", request->grant(), 4096);
  if (s.ok()) s = CheckText("tool", request->tool(), 4096);
  if (!s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  ApprovalFilter filter;
  filter.state = request->state();
  filter.grant = request->grant();
  filter.tool = request->tool();
  filter.limit = request->limit() == 0 ? kDefaultListLimit : request->limit();
  store_->List(filter, [reactor, response](absl::StatusOr<std::vector<v1::Approval>> list) {
    if (!list.ok()) {
      reactor->Finish(ToGrpcStatus(list.status()));
      return;
    }
    for (v1::Approval& a : *list) *response->add_approvals() = std::move(a);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* ApprovalServiceImpl::GetApproval(grpc::CallbackServerContext* context,
                                                           const v1::GetApprovalRequest* request,
                                                           v1::Approval* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::Status s = AdmitAdmin(*context, callers_, token_).status();
  if (s.ok()) s = CheckId(request->id());
  if (!s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  store_->Get(request->id(), [reactor, response](absl::StatusOr<v1::Approval> a) {
    if (!a.ok()) {
      reactor->Finish(ToGrpcStatus(a.status()));
      return;
    }
    *response = *std::move(a);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* ApprovalServiceImpl::DecideApproval(
    grpc::CallbackServerContext* context, const v1::DecideApprovalRequest* request,
    v1::Approval* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<std::string> who = AdmitAdmin(*context, callers_, token_);
  absl::Status s = who.status();
  if (s.ok()) s = CheckId(request->id());
  if (s.ok() && request->approver().empty()) {
    s = absl::InvalidArgumentError("approver is required: who decides (a name or an account)");
  }
  if (s.ok()) s = CheckText("approver", request->approver(), kMaxApproverBytes);
  if (s.ok()) s = CheckText("note", request->note(), kMaxApprovalNoteBytes);
  if (!s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  // With mTLS, the record says which certificate decided, beside the name
  // the approver gave.
  std::string approver = request->approver();
  if (!who->empty()) absl::StrAppend(&approver, " (peer ", *who, ")");
  store_->Decide(request->id(), request->approve(), std::move(approver), request->note(),
                 [reactor, response](absl::StatusOr<v1::Approval> a) {
                   if (!a.ok()) {
                     reactor->Finish(ToGrpcStatus(a.status()));
                     return;
                   }
                   *response = *std::move(a);
                   reactor->Finish(grpc::Status::OK);
                 });
  return reactor;
}

// One WatchApprovals stream: events queue here (bounded) and are written one
// at a time, as gRPC is ready for the next. gRPC is called outside the lock;
// Finish waits for a write in flight. The hub's callback holds the state,
// not the reactor, so an event that races the stream's end finds it gone.
class ApprovalServiceImpl::Watch final : public grpc::ServerWriteReactor<v1::ApprovalEvent> {
 public:
  Watch(ApprovalHub* hub, v1::WatchApprovalsRequest filter)
      : hub_(hub), state_(std::make_shared<State>()), filter_(std::move(filter)) {
    state_->reactor = this;
  }

  // Starts watching (after the pending approvals, when asked for).
  void Start(ApprovalStore* store) {
    std::shared_ptr<State> state = state_;
    const v1::WatchApprovalsRequest& filter = filter_;
    handle_ = hub_->Watch([state, filter](v1::ApprovalEventKind kind, const v1::Approval& a) {
      if (Matches(filter, a)) Push(*state, kind, a);
    });
    if (handle_ == 0) {
      End(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many approval watchers already"));
      return;
    }
    if (!filter_.include_pending()) {
      StartSendInitialMetadata();
      return;
    }
    ApprovalFilter f;
    f.state = v1::APPROVAL_STATE_PENDING;
    f.grant = filter_.grant();
    f.tool = filter_.tool();
    f.limit = kMaxListLimit;
    // The stream is not finished before this answers (nothing else ends it
    // but a cancel, which waits for Finish): `this` is alive.
    store->List(f, [this](absl::StatusOr<std::vector<v1::Approval>> list) {
      if (!list.ok()) {
        End(ToGrpcStatus(list.status()));
        return;
      }
      std::vector<v1::ApprovalEvent> pending;
      for (auto it = list->rbegin(); it != list->rend(); ++it) {  // Oldest first.
        v1::ApprovalEvent& e = pending.emplace_back();
        e.set_kind(v1::APPROVAL_EVENT_PENDING);
        *e.mutable_approval() = std::move(*it);
      }
      {
        absl::MutexLock lock(&state_->mu);
        // The creation of an approval listed here is old news, even when
        // its event (from another server, through Redis) comes after the
        // watch began: dropped, queued or still to come.
        for (const v1::ApprovalEvent& e : pending) state_->listed.insert(e.approval().id());
        state_->queue.erase(
            std::remove_if(state_->queue.begin(), state_->queue.end(),
                           [&](const v1::ApprovalEvent& e) {
                             return e.kind() == v1::APPROVAL_EVENT_CREATED &&
                                    state_->listed.contains(e.approval().id());
                           }),
            state_->queue.end());
        // Before whatever happened while they were read.
        for (auto it = pending.rbegin(); it != pending.rend(); ++it) {
          state_->queue.push_front(std::move(*it));
        }
      }
      StartSendInitialMetadata();
    });
  }

  void OnSendInitialMetadataDone(bool ok) override {
    if (!ok) {
      End(grpc::Status::CANCELLED);
      return;
    }
    {
      absl::MutexLock lock(&state_->mu);
      state_->started = true;
    }
    Next(*state_, false);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      {
        absl::MutexLock lock(&state_->mu);
        state_->writing = false;
      }
      End(grpc::Status::CANCELLED);
      return;
    }
    Next(*state_, true);
  }
  void OnCancel() override { End(grpc::Status::CANCELLED); }
  void OnDone() override {
    if (handle_ != 0) hub_->Unwatch(handle_);
    {
      absl::MutexLock lock(&state_->mu);
      state_->reactor = nullptr;
    }
    delete this;
  }

 private:
  struct State {
    absl::Mutex mu;
    Watch* reactor ABSL_GUARDED_BY(mu) = nullptr;  // Null once done.
    std::deque<v1::ApprovalEvent> queue ABSL_GUARDED_BY(mu);
    // Sent as PENDING at the start (include_pending): no CREATED for them.
    absl::flat_hash_set<std::string> listed ABSL_GUARDED_BY(mu);
    bool started ABSL_GUARDED_BY(mu) = false;
    bool writing ABSL_GUARDED_BY(mu) = false;
    bool ending ABSL_GUARDED_BY(mu) = false;    // End asked for.
    bool finished ABSL_GUARDED_BY(mu) = false;  // Finish called.
    grpc::Status status ABSL_GUARDED_BY(mu);
  };

  static void Push(State& s, v1::ApprovalEventKind kind, const v1::Approval& a) {
    {
      absl::MutexLock lock(&s.mu);
      if (s.reactor == nullptr || s.ending) return;
      if (kind == v1::APPROVAL_EVENT_CREATED && s.listed.contains(a.id())) return;
      if (s.queue.size() >= kMaxWatchBacklog) {
        s.ending = true;
        s.status = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                absl::StrCat("the watcher fell ", kMaxWatchBacklog,
                                             " events behind; watch again"));
      } else {
        v1::ApprovalEvent& e = s.queue.emplace_back();
        e.set_kind(kind);
        *e.mutable_approval() = a;
      }
    }
    Next(s, false);
  }

  // Writes the next event, or finishes once nothing is in flight. `wrote`:
  // called because the front event was written.
  static void Next(State& s, bool wrote) {
    Watch* reactor = nullptr;
    const v1::ApprovalEvent* write = nullptr;
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&s.mu);
      if (wrote) {
        s.writing = false;
        s.queue.pop_front();
      }
      if (s.reactor == nullptr || s.finished || s.writing) return;
      reactor = s.reactor;
      if (s.ending) {
        s.finished = finish = true;
        status = s.status;
      } else if (s.started && !s.queue.empty()) {
        s.writing = true;
        write = &s.queue.front();  // Stays put: a deque keeps its elements.
      }
    }
    if (finish) {
      reactor->Finish(status);
    } else if (write != nullptr) {
      reactor->StartWrite(write);
    }
  }

  void End(const grpc::Status& status) {
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->ending) return;
      state_->ending = true;
      state_->status = status;
    }
    Next(*state_, false);
  }

  ApprovalHub* const hub_;
  const std::shared_ptr<State> state_;
  const v1::WatchApprovalsRequest filter_;
  uint64_t handle_ = 0;
};

grpc::ServerWriteReactor<v1::ApprovalEvent>* ApprovalServiceImpl::WatchApprovals(
    grpc::CallbackServerContext* context, const v1::WatchApprovalsRequest* request) {
  auto* watch = new Watch(hub_, *request);
  absl::Status s = AdmitAdmin(*context, callers_, token_).status();
  if (s.ok()) s = CheckText("grant", request->grant(), 4096);
  if (s.ok()) s = CheckText("tool", request->tool(), 4096);
  if (!s.ok()) {
    watch->Finish(ToGrpcStatus(s));  // Nothing else runs on it: no race.
    return watch;
  }
  watch->Start(store_);
  return watch;
}

}  // namespace toolgate
