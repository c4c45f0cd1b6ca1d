// `grants.<name>.peers` in a real toolgated over plaintext gRPC: a call
// without a client certificate has no peer identity, so a grant that names
// its peers is refused (and consumes nothing), while grants without `peers`
// are decided as before; the decision log has no `peer` field for such calls.
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

constexpr char kPolicy[] = R"(version: "1"
revision: "peers-1"
default: deny
tools:
  search_web:
    limits: [{counter: web, window: 1h, max: 1}]
grants:
  ci-bot:
    peers: ["spiffe://example.org/ns/ci/*"]
    default: allow
)";

toolgate::v1::CheckRequest Req(const std::string& tool, const std::string& grant) {
  toolgate::v1::CheckRequest r;
  r.set_tool(tool);
  r.set_grant(grant);
  return r;
}

TEST(GrantPeersServerTest, WithoutAClientCertificateAGrantWithPeersIsRefused) {
  TempDir dir;
  const std::string path = dir.WriteFile("policy.yaml", kPolicy);
  const std::string log_path = absl::StrCat(dir.path(), "/decisions.jsonl");
  auto server = ServerProcess::Start(
      {"--listen", "127.0.0.1:0", "--policy", path, "--decision-log", log_path});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());

  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<toolgate::v1::CheckResponse> r = client->Check(Req("search_web", "ci-bot"));
    ASSERT_TRUE(r.ok()) << r.status() << "\n" << (*server)->log();
    EXPECT_EQ(r->decision(), toolgate::v1::DECISION_DENY);
    EXPECT_EQ(r->rule(), "grants.ci-bot.peers");
    EXPECT_EQ(r->reason(),
              "grant \"ci-bot\" may be asserted only by peers matching grants.ci-bot.peers; "
              "caller presented no client certificate");
    EXPECT_EQ(r->limits_size(), 0);
  }
  // A grant without `peers` is decided as before.
  absl::StatusOr<toolgate::v1::CheckResponse> other = client->Check(Req("search_web", "agent-7"));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->decision(), toolgate::v1::DECISION_ALLOW);
  EXPECT_EQ(other->rule(), "tools.search_web");

  ASSERT_TRUE((*server)->Signal(SIGTERM));
  ASSERT_TRUE((*server)->WaitExit(absl::Seconds(15)).has_value());
  const std::string text = ReadFileOrEmpty(log_path);
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << text;
  for (const std::string& line : lines) {
    google::protobuf::Struct s;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &s).ok()) << line;
    EXPECT_EQ(s.fields().count("peer"), 0u) << line;
  }
  EXPECT_NE(lines[0].find("\"rule\":\"grants.ci-bot.peers\""), std::string::npos) << lines[0];
}

}  // namespace
}  // namespace toolgate_test
