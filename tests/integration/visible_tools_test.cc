// DecisionService.ListVisibleTools against Check, over gRPC to a real
// toolgated: for each example policy, every tool it names (globs too, as
// written and as names they match) and unlisted ones, under every grant and
// server it names and unlisted ones, the visibility of a tool is what a
// dry-run Check of it with valid arguments decides (arguments taken from the
// example's test cases). And the same over mTLS for a grant bound to its
// callers' certificates (`peers`), as each caller sees it.
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "server/base/diagnostics.h"
#include "server/policytest/cases.h"
#include "tests/integration/pki.h"
#include "tests/integration/process.h"
#include "toolgate/client.h"
#include "yaml-cpp/yaml.h"

namespace toolgate_test {
namespace {

using toolgate::v1::CheckRequest;
using toolgate::v1::CheckResponse;
using toolgate::v1::DecisionService;
using toolgate::v1::ListVisibleToolsRequest;
using toolgate::v1::ListVisibleToolsResponse;

// What a policy names: tools (with names its globs match), servers, grants.
struct Named {
  std::set<std::string> tools, servers, grants;
};

// yaml-cpp throws on asking a missing key's node anything but whether it
// is defined.
bool IsMap(const YAML::Node& node) { return node.IsDefined() && node.IsMap(); }

void AddTools(const YAML::Node& tools, Named* out) {
  if (!IsMap(tools)) return;
  for (const auto& entry : tools) {
    const std::string name = entry.first.as<std::string>();
    out->tools.insert(name);
    if (name.find_first_of("*?") == std::string::npos) continue;
    // Names the glob matches: its wildcards filled in, and emptied.
    out->tools.insert(absl::StrReplaceAll(name, {{"*", "zz"}, {"?", "q"}}));
    out->tools.insert(absl::StrReplaceAll(name, {{"*", ""}, {"?", "q"}}));
  }
}

Named NamedBy(const std::string& policy_path) {
  Named named;
  const YAML::Node doc = YAML::LoadFile(policy_path);  // JSON is YAML too.
  AddTools(doc["tools"], &named);
  for (const char* section : {"servers", "grants"}) {
    if (!IsMap(doc[section])) continue;
    for (const auto& s : doc[section]) {
      (section == std::string("servers") ? named.servers : named.grants)
          .insert(s.first.as<std::string>());
      AddTools(s.second["tools"], &named);
    }
  }
  return named;
}

// Compares ListVisibleTools with dry-run checks over one channel (so with
// one caller identity), for every grant and server given.
class Comparison {
 public:
  // `args`: candidate arguments by tool; the first a check finds valid is
  // used (no arguments are tried first).
  Comparison(std::shared_ptr<grpc::Channel> channel,
             std::map<std::string, std::vector<google::protobuf::Struct>> args)
      : stub_(DecisionService::NewStub(channel)), client_(channel), args_(std::move(args)) {}

  void Run(const std::set<std::string>& tools, const std::set<std::string>& grants,
           const std::set<std::string>& servers) {
    for (const std::string& grant : grants) {
      for (const std::string& server : servers) Compare(tools, grant, server);
    }
  }

  std::map<toolgate::v1::Decision, int> seen;   // Answers compared, by decision.
  std::set<std::string> rules;                  // Rules seen.
  std::vector<std::string> without_valid_args;  // Tools no candidate was valid for.

 private:
  void Compare(const std::set<std::string>& tools, const std::string& grant,
               const std::string& server) {
    ListVisibleToolsRequest req;
    req.set_grant(grant);
    req.set_server(server);
    req.set_session("s-1");
    for (const std::string& t : tools) req.add_tools(t);
    ListVisibleToolsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status status = stub_->ListVisibleTools(&ctx, req, &resp);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(resp.tools_size(), req.tools_size());
    int i = 0;
    for (const std::string& tool : tools) {
      const toolgate::v1::ToolVisibility& got = resp.tools(i++);
      ASSERT_EQ(got.tool(), tool);
      const std::string where = absl::StrCat(tool, " by ", grant, " on \"", server, "\"");
      absl::StatusOr<CheckResponse> want = CheckWithValidArgs(tool, grant, server);
      ASSERT_TRUE(want.ok()) << where << ": " << want.status();
      if (want->violations_size() > 0) {
        without_valid_args.push_back(where);
        continue;
      }
      EXPECT_EQ(got.decision(), want->decision()) << where << ": " << want->reason();
      EXPECT_EQ(got.rule(), want->rule()) << where;
      EXPECT_EQ(got.reason(), want->reason()) << where;
      EXPECT_EQ(resp.policy_version(), want->policy_version()) << where;
      ++seen[got.decision()];
      rules.insert(got.rule());
    }
  }

  // The dry-run check of `tool` with the first candidate arguments it finds
  // valid (or the last answer, with its violations, when none is).
  absl::StatusOr<CheckResponse> CheckWithValidArgs(const std::string& tool,
                                                   const std::string& grant,
                                                   const std::string& server) {
    std::vector<google::protobuf::Struct> candidates = {google::protobuf::Struct()};
    if (auto it = args_.find(tool); it != args_.end()) {
      candidates.insert(candidates.end(), it->second.begin(), it->second.end());
    }
    absl::StatusOr<CheckResponse> r;
    for (const google::protobuf::Struct& args : candidates) {
      CheckRequest req;
      req.set_tool(tool);
      req.set_grant(grant);
      req.set_server(server);
      req.set_session("s-1");
      req.set_dry_run(true);
      *req.mutable_args() = args;
      r = client_.Check(req, absl::Seconds(30));
      if (!r.ok() || r->violations_size() == 0) return r;
    }
    return r;
  }

  std::unique_ptr<DecisionService::Stub> stub_;
  toolgate::Client client_;
  const std::map<std::string, std::vector<google::protobuf::Struct>> args_;
};

class VisibleToolsExamplesTest
    : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(VisibleToolsExamplesTest, AgreesWithDryRunChecksOnEveryToolGrantAndServer) {
  const std::string policy = SourcePath(std::string("examples/") + GetParam().first);
  const std::string cases_path = SourcePath(std::string("examples/") + GetParam().second);
  toolgate::Diagnostics diags(cases_path);
  std::optional<toolgate::policytest::CasesFile> cases =
      toolgate::policytest::ParseCasesFile(ReadFileOrEmpty(cases_path), diags);
  ASSERT_TRUE(cases.has_value()) << cases_path;

  Named named = NamedBy(policy);
  ASSERT_FALSE(named.tools.empty()) << policy;
  named.tools.insert({"unlisted_tool", "zz"});
  named.grants.insert("unlisted-grant");
  named.servers.insert({"", "unlisted-server"});
  // The cases' calls: their names, and their arguments as candidates.
  std::map<std::string, std::vector<google::protobuf::Struct>> args;
  for (const toolgate::policytest::Step& step : cases->steps) {
    if (step.is_advance) continue;
    const CheckRequest& r = step.request;
    named.tools.insert(r.tool());
    named.grants.insert(r.grant());
    named.servers.insert(r.server());
    if (r.args().fields_size() > 0) args[r.tool()].push_back(r.args());
  }

  auto server =
      ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", policy, "--watch=false"});
  ASSERT_TRUE(server.ok()) << server.status();
  Comparison comparison(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()),
      std::move(args));
  comparison.Run(named.tools, named.grants, named.servers);
  int compared = 0;
  for (const auto& [decision, n] : comparison.seen) compared += n;
  EXPECT_EQ(comparison.without_valid_args, std::vector<std::string>())
      << "no valid arguments known for these calls";
  EXPECT_GE(compared,
            static_cast<int>(named.tools.size() * named.grants.size() * named.servers.size()));
  EXPECT_GT(comparison.seen[toolgate::v1::DECISION_ALLOW], 0);
  EXPECT_GT(comparison.seen[toolgate::v1::DECISION_DENY], 0);
  std::cout << GetParam().first << ": " << compared << " tools compared (" << named.tools.size()
            << " tools x " << named.grants.size() << " grants x " << named.servers.size()
            << " servers), " << comparison.rules.size()
            << " rules: " << absl::StrJoin(comparison.rules, " ") << "\n";
}

INSTANTIATE_TEST_SUITE_P(
    Examples, VisibleToolsExamplesTest,
    ::testing::Values(std::make_pair("policy.yaml", "policy.cases.yaml"),
                      std::make_pair("scoped-policy.yaml", "scoped-policy.cases.yaml"),
                      std::make_pair("seed-policy.json", "seed-policy.cases.yaml")),
    [](const auto& info) {
      std::string name = info.param.first;
      for (char& c : name) {
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

// Over mTLS: a grant whose `peers` admit one caller and not another.
TEST(VisibleToolsPeersTest, EachCallerSeesWhatItsChecksWouldGet) {
  constexpr char kPolicy[] = R"(version: "1"
revision: "visible-peers-1"
default: deny
tools:
  read_file: {category: read, risk: low}
  run_command: {category: execute, risk: high}
  delete_repository: {action: deny, reason: "never"}
  search_web:
    limits: [{counter: web, window: 1h, max: 1}]
classes:
  high_risk:
    min_risk: high
    action: require_approval
grants:
  ci-bot:
    peers: ["spiffe://example.org/ns/ci/*"]
    bypass_classes: [high_risk]
    default: allow
  agent-7:
    tools:
      "*_repository": {action: require_approval}
)";
  TestPki pki;
  ASSERT_TRUE(pki.MakeCa("ca").ok());
  ASSERT_TRUE(pki.Issue("ca", "server", "toolgate", "DNS:toolgate,IP:127.0.0.1").ok());
  ASSERT_TRUE(pki.Issue("ca", "ci-bot", "ci-bot", "URI:spiffe://example.org/ns/ci/sa/ci-bot").ok());
  ASSERT_TRUE(
      pki.Issue("ca", "agent", "agent", "URI:spiffe://example.org/ns/agents/sa/agent-7").ok());
  TempDir dir;
  const std::string policy = dir.WriteFile("policy.yaml", kPolicy);
  auto server = ServerProcess::Start(
      {"--listen", "127.0.0.1:0", "--policy", policy, "--watch=false", "--tls-cert",
       pki.Cert("server"), "--tls-key", pki.Key("server"), "--tls-client-ca", pki.Cert("ca")});
  ASSERT_TRUE(server.ok()) << server.status();

  const std::set<std::string> tools = {"read_file",  "run_command",     "delete_repository",
                                       "search_web", "fork_repository", "weather"};
  for (const std::string identity : {"ci-bot", "agent"}) {
    SCOPED_TRACE(identity);
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ReadFileOrEmpty(pki.Cert("ca"));
    tls.pem_cert_chain = ReadFileOrEmpty(pki.Cert(identity));
    tls.pem_private_key = ReadFileOrEmpty(pki.Key(identity));
    Comparison comparison(grpc::CreateChannel((*server)->address(), grpc::SslCredentials(tls)), {});
    comparison.Run(tools, {"ci-bot", "agent-7", "other"}, {""});
    EXPECT_EQ(comparison.without_valid_args, std::vector<std::string>());
    EXPECT_GT(comparison.seen[toolgate::v1::DECISION_ALLOW], 0);
    EXPECT_GT(comparison.seen[toolgate::v1::DECISION_REQUIRE_APPROVAL], 0);
    EXPECT_GT(comparison.seen[toolgate::v1::DECISION_DENY], 0);
    // Only the agent is refused ci-bot, by the peers rule.
    EXPECT_EQ(comparison.rules.count("grants.ci-bot.peers"), identity == "agent" ? 1u : 0u);
    if (identity == "ci-bot") {
      EXPECT_EQ(comparison.rules.count("grants.ci-bot.default"), 1u);
    }
  }
}

}  // namespace
}  // namespace toolgate_test
