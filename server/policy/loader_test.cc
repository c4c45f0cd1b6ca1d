// Tests of policy loading: files and directories on disk, the shipped
// examples, revisions, and checks that span several sources.
#include "server/policy/loader.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "server/base/files.h"
#include "server/policy/policy.h"
#include "server/policy/policy_testing.h"

namespace toolgate {
namespace {

namespace fs = std::filesystem;

void WriteFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

// A fresh, empty directory under the test temp dir, unique per test.
fs::path FreshDir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(::testing::TempDir()) /
                 (std::string("toolgate_loader_test_") + info->name() + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// The message of loading `path`, which must fail.
std::string LoadPathError(const fs::path& path) {
  auto p = LoadPolicyFromPath(path.string());
  EXPECT_FALSE(p.ok()) << path;
  return p.ok() ? "" : std::string(p.status().message());
}

// ---------------------------------------------------------------------------
// The shipped examples.

TEST(PolicyExamples, SeedPolicyLoadsUnchanged) {
  const std::string path = TOOLGATE_SOURCE_DIR "/examples/seed-policy.json";
  auto p = LoadPolicyFromPath(path);
  ASSERT_TRUE(p.ok()) << p.status();
  const Policy& policy = **p;
  // No `revision` in the seed: the content hash of the file's bytes.
  EXPECT_EQ(policy.revision(), ExpectedRevision(ReadRegularFile(path).value()));
  EXPECT_EQ(policy.default_rule().action, Action::kDeny);
  EXPECT_EQ(policy.exact_count(), 1u);
  EXPECT_EQ(policy.glob_count(), 0u);
  ASSERT_EQ(policy.sources().size(), 1u);
  EXPECT_EQ(policy.sources()[0], path);

  const ToolRule& r = policy.Find("wait_for_background_task");
  EXPECT_EQ(r.rule_id, "tools.wait_for_background_task");
  EXPECT_EQ(r.action, Action::kAllow);
  EXPECT_EQ(r.args, nullptr);
  ASSERT_EQ(r.limits.size(), 1u);
  const LimitSpec& l = r.limits[0];
  EXPECT_EQ(l.counter, "wait_for_background_task_rate");
  EXPECT_EQ(l.window_ms, 60'000);
  EXPECT_EQ(l.max, 10);
  EXPECT_EQ(l.burst, 10);
  EXPECT_EQ(l.scope, Scope::kGrant);
  EXPECT_EQ(l.algorithm, Algorithm::kSlidingWindow);

  EXPECT_EQ(policy.Find("delete_repository").rule_id, "default");
  EXPECT_EQ(policy.Find("wait_for_background_task2").rule_id, "default");
}

TEST(PolicyExamples, ExamplePolicyYamlLoads) {
  auto p = LoadPolicyFromPath(TOOLGATE_SOURCE_DIR "/examples/policy.yaml");
  ASSERT_TRUE(p.ok()) << p.status();
  const Policy& policy = **p;
  EXPECT_EQ(policy.revision(), "example-2026-11-25.1");
  EXPECT_EQ(policy.default_rule().action, Action::kDeny);

  // Listed without anything: allowed, no limits ({} and null alike).
  for (const char* tool : {"list_files", "read_file"}) {
    const ToolRule& r = policy.Find(tool);
    EXPECT_EQ(r.rule_id, std::string("tools.") + tool);
    EXPECT_EQ(r.action, Action::kAllow);
    EXPECT_TRUE(r.limits.empty());
  }
  // Two tools sharing counters define them identically.
  const ToolRule& search = policy.Find("search_web");
  const ToolRule& fetch = policy.Find("fetch_url");
  ASSERT_EQ(search.limits.size(), 2u);
  ASSERT_EQ(fetch.limits.size(), 2u);
  EXPECT_TRUE(search.limits[0].SameDefinition(fetch.limits[0]));
  EXPECT_TRUE(search.limits[1].SameDefinition(fetch.limits[1]));
  EXPECT_EQ(search.limits[0].window_ms, 3'600'000);
  EXPECT_EQ(search.limits[0].scope, Scope::kSession);
  EXPECT_EQ(search.limits[1].window_ms, 86'400'000);
  EXPECT_EQ(search.limits[1].scope, Scope::kGlobal);
  EXPECT_EQ(search.limits[1].algorithm, Algorithm::kFixedWindow);
  EXPECT_EQ(search.limits[1].max, 5000);

  const ToolRule& send = policy.Find("send_message");
  ASSERT_EQ(send.limits.size(), 1u);
  EXPECT_EQ(send.limits[0].algorithm, Algorithm::kTokenBucket);
  EXPECT_EQ(send.limits[0].window_ms, 60'000);  // `window: 60` is seconds.
  EXPECT_EQ(send.limits[0].max, 30);
  EXPECT_EQ(send.limits[0].burst, 10);

  const ToolRule& run = policy.Find("run_command");
  EXPECT_NE(run.args, nullptr);
  ASSERT_EQ(run.limits.size(), 1u);
  EXPECT_EQ(run.limits[0].window_ms, 30'000);

  const ToolRule& del = policy.Find("delete_repository");
  EXPECT_EQ(del.action, Action::kDeny);
  EXPECT_EQ(del.reason, "Agents may not delete repositories");

  EXPECT_EQ(policy.Find("github_create_issue").rule_id, "tools.github_*");
  EXPECT_EQ(policy.Find("github_create_issue").action, Action::kRequireApproval);
  EXPECT_EQ(policy.Find("github_create_issue").reason, "GitHub writes need a human");
  EXPECT_EQ(policy.Find("github_get_issue").rule_id, "tools.github_get_*");
  EXPECT_EQ(policy.Find("github_get_issue").action, Action::kAllow);
  EXPECT_EQ(policy.Find("gitlab_get_issue").rule_id, "default");
  EXPECT_EQ(policy.glob_count(), 2u);
}

// ---------------------------------------------------------------------------
// Revision.

TEST(PolicyRevision, GivenRevisionIsUsed) {
  auto p = MustLoad("version: \"1\"\nrevision: \"2026-11-25.1\"\n");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->revision(), "2026-11-25.1");
}

TEST(PolicyRevision, AbsentRevisionIsContentHash) {
  const std::string text = "version: \"1\"\ndefault: allow\n";
  auto p = MustLoad(text);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->revision(), ExpectedRevision(text));
  EXPECT_EQ(p->revision().size(), std::string("sha256:").size() + 12);
  EXPECT_EQ(ContentRevision({{"p.yaml", text}}), ExpectedRevision(text));
  // The name of a single file does not matter; one changed byte does.
  EXPECT_EQ(ContentRevision({{"other/name.json", text}}), ExpectedRevision(text));
  auto q = MustLoad(text + " ");
  ASSERT_TRUE(q);
  EXPECT_NE(q->revision(), p->revision());
  EXPECT_EQ(q->revision(), ExpectedRevision(text + " "));
  // Known vector: SHA-256("") = e3b0c442 98fc1c14 ...
  EXPECT_EQ(ContentRevision({{"x", ""}}), "sha256:e3b0c44298fc");
}

TEST(PolicyRevision, SeveralSourcesHashNamesAndContents) {
  const std::string a = "version: \"1\"\ntools:\n  a: {}\n";
  const std::string b = "version: \"1\"\ntools:\n  b: {}\n";
  const std::string bytes = std::string("a.yaml") + '\0' + a + '\0' + "b.yaml" + '\0' + b + '\0';
  EXPECT_EQ(ContentRevision({{"/some/dir/a.yaml", a}, {"/some/dir/b.yaml", b}}),
            ExpectedRevision(bytes));
  auto p = LoadPolicyFromSources({{"/some/dir/a.yaml", a}, {"/some/dir/b.yaml", b}});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->revision(), ExpectedRevision(bytes));
}

// ---------------------------------------------------------------------------
// Checks across sources.

TEST(PolicyErrors, ErrorsFromSeveralSourcesAreAllReported) {
  auto p = LoadPolicyFromSources({{"a.yaml", "version: \"2\"\n"},
                                  {"b.yaml", "version: \"1\"\ndefault: nope\n"},
                                  {"c.yaml", "version: \"1\"\n"}});
  ASSERT_FALSE(p.ok());
  const std::string msg(p.status().message());
  EXPECT_TRUE(HasSubstr(msg, "a.yaml:1:10: version must be"));
  EXPECT_TRUE(HasSubstr(msg, "b.yaml:2:10: default must be"));
  EXPECT_EQ(CountLines(msg), 2u) << msg;
}

TEST(PolicyErrors, DefaultSetTwiceAcrossSources) {
  auto p = LoadPolicyFromSources({{"a.yaml", "version: \"1\"\ndefault: allow\n"},
                                  {"b.yaml", "version: \"1\"\ndefault: deny\n"}});
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(HasSubstr(std::string(p.status().message()),
                        "b.yaml:2:10: default is already set at a.yaml:2:10"));
}

TEST(PolicyErrors, ConflictingRevisionsAcrossSources) {
  auto p = LoadPolicyFromSources({{"a.yaml", "version: \"1\"\nrevision: r1\n"},
                                  {"b.yaml", "version: \"1\"\nrevision: r2\n"}});
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(HasSubstr(std::string(p.status().message()), "b.yaml:2:11: revision \"r2\""));
  EXPECT_TRUE(HasSubstr(std::string(p.status().message()), "a.yaml:2:11"));
  // The same revision in two files is fine.
  auto q = LoadPolicyFromSources({{"a.yaml", "version: \"1\"\nrevision: r1\n"},
                                  {"b.yaml", "version: \"1\"\nrevision: r1\n"}});
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ((*q)->revision(), "r1");
}

// ---------------------------------------------------------------------------
// Loading from disk.

TEST(PolicyLoadPath, MissingPathIsNotFound) {
  auto p = LoadPolicyFromPath((fs::path(::testing::TempDir()) / "toolgate_no_such_policy.yaml").string());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kNotFound);
}

TEST(PolicyLoadPath, FileErrorsNameThePath) {
  const fs::path dir = FreshDir("d");
  const fs::path file = dir / "bad.yaml";
  WriteFile(file, "version: \"1\"\ntools:\n  t:\n    action: nope\n");
  auto p = LoadPolicyFromPath(file.string());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(HasSubstr(std::string(p.status().message()), file.string() + ":4:13: tools.t.action"));
}

TEST(PolicyLoadPath, DirectoryMergesFiles) {
  const fs::path dir = FreshDir("d");
  const std::string a = "version: \"1\"\ndefault: allow\ntools:\n  alpha:\n    action: deny\n";
  const std::string b =
      "{\"version\": \"1\", \"tools\": {\"beta\": {\"action\": \"require_approval\"}, "
      "\"gamma_*\": {}}}";
  WriteFile(dir / "a.yaml", a);
  WriteFile(dir / "b.json", b);
  WriteFile(dir / "README.md", "not a policy: {");
  auto p = LoadPolicyFromPath(dir.string());
  ASSERT_TRUE(p.ok()) << p.status();
  const Policy& policy = **p;
  EXPECT_EQ(policy.default_rule().action, Action::kAllow);
  EXPECT_EQ(policy.Find("alpha").action, Action::kDeny);
  EXPECT_EQ(policy.Find("beta").action, Action::kRequireApproval);
  EXPECT_EQ(policy.Find("gamma_x").rule_id, "tools.gamma_*");
  EXPECT_EQ(policy.exact_count(), 2u);
  EXPECT_EQ(policy.glob_count(), 1u);
  EXPECT_EQ(policy.sources().size(), 2u);
  // The revision covers both files, names and contents.
  const std::string bytes = std::string("a.yaml") + '\0' + a + '\0' + "b.json" + '\0' + b + '\0';
  EXPECT_EQ(policy.revision(), ExpectedRevision(bytes));
}

TEST(PolicyLoadPath, DuplicateToolAcrossFiles) {
  const fs::path dir = FreshDir("d");
  WriteFile(dir / "a.yaml", "version: \"1\"\ntools:\n  shared_tool: {}\n");
  WriteFile(dir / "b.yaml", "version: \"1\"\ntools:\n  other: {}\n  shared_tool:\n    action: deny\n");
  const std::string msg = LoadPathError(dir);
  EXPECT_TRUE(HasSubstr(msg, (dir / "b.yaml").string() +
                                 ":4:3: tool \"shared_tool\" is already defined at " +
                                 (dir / "a.yaml").string() + ":3:3"));
  EXPECT_EQ(CountLines(msg), 1u) << msg;
}

TEST(PolicyLoadPath, CounterConflictAcrossFilesNamesBothFiles) {
  const fs::path dir = FreshDir("d");
  WriteFile(dir / "a.yaml", "version: \"1\"\ntools:\n  x:\n    limits:\n      - {counter: c, window: 1m, max: 2}\n");
  WriteFile(dir / "b.yaml", "version: \"1\"\ntools:\n  y:\n    limits:\n      - {counter: c, window: 1h, max: 2}\n");
  const std::string msg = LoadPathError(dir);
  EXPECT_TRUE(HasSubstr(msg, (dir / "b.yaml").string() + ":5:9: counter \"c\" is defined here as 2 per 1h"));
  EXPECT_TRUE(HasSubstr(msg, "but at " + (dir / "a.yaml").string() + ":5:9 as 2 per 1m"));
}

TEST(PolicyLoadPath, HiddenEntriesAreSkipped) {
  // The layout of a mounted Kubernetes ConfigMap: the real files live in a
  // hidden timestamped directory, "..data" links to it, and the visible names
  // link through "..data".
  const fs::path dir = FreshDir("d");
  fs::create_directory(dir / "..2026_11_25_10_00_00.123");
  WriteFile(dir / "..2026_11_25_10_00_00.123" / "policy.yaml",
            "version: \"1\"\nrevision: cm-1\ntools:\n  from_configmap: {}\n");
  fs::create_directory_symlink("..2026_11_25_10_00_00.123", dir / "..data");
  fs::create_symlink("..data/policy.yaml", dir / "policy.yaml");
  // Hidden files that would break the load if read.
  WriteFile(dir / ".hidden.yaml", "this is: [not valid");
  WriteFile(dir / "..data.yaml", "version: \"1\"\ntools:\n  from_configmap: {}\n");
  auto p = LoadPolicyFromPath(dir.string());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->revision(), "cm-1");
  EXPECT_EQ((*p)->Find("from_configmap").rule_id, "tools.from_configmap");
  ASSERT_EQ((*p)->sources().size(), 1u);
  EXPECT_EQ(fs::path((*p)->sources()[0]).filename(), "policy.yaml");
}

TEST(PolicyLoadPath, DirectoryWithoutPolicyFiles) {
  const fs::path dir = FreshDir("d");
  WriteFile(dir / ".hidden.yaml", "version: \"1\"\n");
  auto p = LoadPolicyFromPath(dir.string());
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(HasSubstr(std::string(p.status().message()), "no *.yaml"));
}

}  // namespace
}  // namespace toolgate
