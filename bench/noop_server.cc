// noop_server: the baseline for toolgate's benchmarks.
//
// Serves /toolgate.v1.DecisionService/Check with the same gRPC library and
// the same callback (reactor) API, raw-bytes form, as toolgated, but answers
// every call at once with an empty message: it neither parses the request nor
// decides anything. What it costs per call is what gRPC itself costs on the
// machine, so toolgate's numbers are reported as ratios to it.
//
// Usage: noop_server [--listen HOST:PORT]   (port 0 picks a free one)
// Prints "listening on HOST:PORT" to stderr once listening; exits 0 on
// SIGTERM or SIGINT.
#include <signal.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "server/base/flags.h"
#include "server/base/runtime.h"
#include "toolgate/v1/decision.grpc.pb.h"

namespace {

constexpr char kUsage[] =
    "noop_server: a no-op toolgate.v1.DecisionService/Check server (benchmark baseline).\n"
    "\n"
    "Answers every Check with an empty message, using gRPC's callback API like\n"
    "toolgated. Prints \"listening on HOST:PORT\" to stderr once listening.\n"
    "\n"
    "Usage: noop_server [--listen HOST:PORT]";

class NoopDecisionService final
    : public toolgate::v1::DecisionService::WithRawCallbackMethod_Check<
          toolgate::v1::DecisionService::Service> {
 public:
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* /*request*/,
                                  grpc::ByteBuffer* response) override {
    // An empty, valid buffer: a CheckResponse with every field at its default.
    grpc::Slice empty;
    *response = grpc::ByteBuffer(&empty, 1);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

}  // namespace

int main(int argc, char** argv) {
  toolgate::ConfigureServingRuntime();
  std::string listen = "127.0.0.1:0";
  toolgate::FlagSet flags(kUsage, "");
  flags.String("listen", &listen, "Address to serve on, HOST:PORT (port 0 picks a free one).");
  absl::StatusOr<std::vector<std::string>> positional =
      flags.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!positional.ok()) {
    std::cerr << "noop_server: " << positional.status().message() << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (!positional->empty()) {
    std::cerr << "noop_server: unexpected argument \"" << positional->front() << "\"\n";
    return 2;
  }

  // Taken synchronously below; blocked before gRPC starts its threads.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  NoopDecisionService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "noop_server: cannot listen on " << listen << "\n";
    return 1;
  }
  const std::string host = listen.substr(0, listen.rfind(':'));
  std::cerr << absl::StrCat("noop_server listening on ", host, ":", port, "\n") << std::flush;

  int sig = 0;
  sigwait(&signals, &sig);
  server->Shutdown();
  server->Wait();
  return 0;
}
