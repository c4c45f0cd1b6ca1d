// CheckRequest.args_json against args, over gRPC to a real toolgated: every
// call of the example policies' test cases, sent once with its arguments as
// a Struct and once as JSON text, gets the same decision, rule, reason and
// violations. (Dry runs: no counter moves, so the two answers are comparable
// call by call.)
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/diagnostics.h"
#include "server/base/json.h"
#include "server/policytest/cases.h"
#include "tests/integration/process.h"
#include "toolgate/client.h"

namespace toolgate_test {
namespace {

std::string Violations(const toolgate::v1::CheckResponse& r) {
  std::string out;
  for (const auto& v : r.violations()) out += v.path() + ": " + v.message() + "\n";
  return out;
}

class ArgsJsonTest : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(ArgsJsonTest, SameDecisionsAsArgsOnTheExampleCases) {
  const std::string policy = SourcePath(std::string("examples/") + GetParam().first);
  const std::string cases_path = SourcePath(std::string("examples/") + GetParam().second);
  toolgate::Diagnostics diags(cases_path);
  std::optional<toolgate::policytest::CasesFile> cases =
      toolgate::policytest::ParseCasesFile(ReadFileOrEmpty(cases_path), diags);
  ASSERT_TRUE(cases.has_value()) << cases_path;

  auto server = ServerProcess::Start({"--listen", "127.0.0.1:0", "--policy", policy,
                                      "--watch=false"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = toolgate::Client::Connect((*server)->address());
  int compared = 0, with_args = 0;
  for (const toolgate::policytest::Step& step : cases->steps) {
    if (step.is_advance || !step.peer.empty()) continue;
    toolgate::v1::CheckRequest as_struct = step.request;
    as_struct.set_dry_run(true);
    toolgate::v1::CheckRequest as_text = as_struct;
    as_text.clear_args();
    as_text.set_args_json(toolgate::CanonicalJson(as_struct.args()));
    auto a = client->Check(as_struct);
    auto b = client->Check(as_text);
    ASSERT_TRUE(a.ok()) << step.name << ": " << a.status();
    ASSERT_TRUE(b.ok()) << step.name << ": " << b.status();
    EXPECT_EQ(a->decision(), b->decision()) << step.name;
    EXPECT_EQ(a->rule(), b->rule()) << step.name;
    EXPECT_EQ(a->reason(), b->reason()) << step.name;
    EXPECT_EQ(Violations(*a), Violations(*b)) << step.name;
    ++compared;
    if (as_struct.args().fields_size() > 0) ++with_args;
  }
  EXPECT_GT(compared, 5) << "too few cases compared";
  EXPECT_GT(with_args, 0) << "no case had arguments";
}

INSTANTIATE_TEST_SUITE_P(
    Examples, ArgsJsonTest,
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

}  // namespace
}  // namespace toolgate_test
