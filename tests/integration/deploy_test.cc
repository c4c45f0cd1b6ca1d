// The deployment files agree with the binary they deploy.
//
// Docker and Kubernetes do not run here, so these tests read what they would
// read: every YAML file under deploy/ (with yaml-cpp, every document of a
// multi-document file) and the Dockerfile as text, and cross-check them
// against the real toolgated (`--help` lists every flag and its TOOLGATE_*
// variable) and against each other: ports, probes, images, the policy mount,
// security settings and kustomization resources; the compose variants for
// Redis Sentinel and Redis Cluster are merged over compose.yaml as Compose
// would and checked for a consistent topology. The local topology script
// is run for real: a redis-server and three toolgated sharing it, and its
// Sentinel and Cluster modes.
#include <sys/types.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/process.h"
#include "toolgate/client.h"
#include "yaml-cpp/yaml.h"

namespace toolgate_test {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// ---- reading the files --------------------------------------------------------

std::string DeployDir() { return SourcePath("deploy"); }

std::string Rel(const std::string& path) {
  return fs::path(path).lexically_relative(SourcePath("")).string();
}

std::vector<std::string> YamlFilesUnder(const std::string& dir) {
  std::vector<std::string> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string p = e.path().string();
    if (e.is_regular_file() && (absl::EndsWith(p, ".yaml") || absl::EndsWith(p, ".yml"))) {
      out.push_back(p);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

struct Doc {
  std::string file;
  YAML::Node node;
};

std::vector<Doc> LoadDocs(const std::string& file) {
  std::vector<Doc> out;
  for (const YAML::Node& n : YAML::LoadAllFromFile(file)) {
    if (n && !n.IsNull()) out.push_back({file, n});
  }
  return out;
}

// node[k1][k2]...: an undefined node (false) when any step is missing,
// instead of yaml-cpp's exception for indexing a missing node.
YAML::Node At(const YAML::Node& n) { return n ? n : YAML::Node(YAML::NodeType::Undefined); }
template <typename... Rest>
YAML::Node At(const YAML::Node& n, const std::string& key, const Rest&... rest) {
  if (!n || !n.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node child = n[key];
  if (!child) return YAML::Node(YAML::NodeType::Undefined);
  return At(child, rest...);
}

std::string Str(const YAML::Node& n) {
  return n && n.IsScalar() ? n.as<std::string>() : std::string();
}

bool IsKustomization(const std::string& file) {
  return fs::path(file).filename() == "kustomization.yaml";
}
bool IsCompose(const std::string& file) { return absl::StrContains(file, "/deploy/compose/"); }
// Envoy's own configuration (a bootstrap), not a Kubernetes object.
bool IsEnvoyBootstrap(const std::string& file) {
  return absl::StrContains(file, "/deploy/envoy/") && fs::path(file).filename() == "envoy.yaml";
}

// The files kustomizations list under `patches` (partial objects, merged into
// others by kustomize).
std::set<std::string> PatchFiles() {
  std::set<std::string> out;
  for (const std::string& f : YamlFilesUnder(DeployDir())) {
    if (!IsKustomization(f)) continue;
    const YAML::Node k = YAML::LoadFile(f);
    if (!k["patches"]) continue;
    for (const YAML::Node& p : k["patches"]) {
      out.insert((fs::path(f).parent_path() / Str(p["path"])).lexically_normal().string());
    }
  }
  return out;
}

// Every Kubernetes object under deploy/ (not kustomizations, not compose,
// not patches).
std::vector<Doc> AllObjects() {
  std::vector<Doc> out;
  const std::set<std::string> patches = PatchFiles();
  for (const std::string& f : YamlFilesUnder(DeployDir())) {
    if (IsKustomization(f) || IsCompose(f) || IsEnvoyBootstrap(f) ||
        patches.count(fs::path(f).lexically_normal().string())) {
      continue;
    }
    for (Doc& d : LoadDocs(f)) out.push_back(std::move(d));
  }
  return out;
}

// The pod spec of a workload (null for other kinds).
YAML::Node PodSpec(const YAML::Node& obj) {
  const std::string kind = Str(obj["kind"]);
  if (kind == "Pod") return obj["spec"];
  if (kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" ||
      kind == "ReplicaSet" || kind == "Job") {
    return At(obj, "spec", "template", "spec");
  }
  return YAML::Node(YAML::NodeType::Undefined);
}
YAML::Node PodLabels(const YAML::Node& obj) {
  return Str(obj["kind"]) == "Pod" ? At(obj, "metadata", "labels")
                                   : At(obj, "spec", "template", "metadata", "labels");
}

std::vector<YAML::Node> Containers(const YAML::Node& pod) {
  std::vector<YAML::Node> out;
  for (const char* key : {"initContainers", "containers"}) {
    if (pod[key]) {
      for (const YAML::Node& c : pod[key]) out.push_back(c);
    }
  }
  return out;
}

bool IsToolgated(const YAML::Node& container) {
  return absl::StrContains(Str(container["image"]), "toolgated");
}

struct ToolgatedContainer {
  std::string file;
  std::string where;  // file: kind/name/container
  YAML::Node obj, pod, container;
};
std::vector<ToolgatedContainer> ToolgatedContainers(const std::vector<Doc>& docs) {
  std::vector<ToolgatedContainer> out;
  for (const Doc& d : docs) {
    const YAML::Node pod = PodSpec(d.node);
    if (!pod) continue;
    for (const YAML::Node& c : Containers(pod)) {
      if (!IsToolgated(c)) continue;
      out.push_back({d.file, absl::StrCat(Rel(d.file), ": ", Str(d.node["kind"]), "/",
                                  Str(At(d.node, "metadata", "name")), " container ", Str(c["name"])),
                     d.node, pod, c});
    }
  }
  return out;
}

// NAME -> literal value of a container's env (valueFrom entries map to "").
std::map<std::string, std::string> Env(const YAML::Node& container) {
  std::map<std::string, std::string> out;
  if (!container["env"]) return out;
  for (const YAML::Node& e : container["env"]) out[Str(e["name"])] = Str(e["value"]);
  return out;
}

int PortOf(const std::string& host_port) {
  int port = -1;
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(host_port.substr(colon + 1), &port)) {
    return -1;
  }
  return port;
}

// containerPort of the named port, or -1.
int NamedPort(const YAML::Node& container, const std::string& name) {
  if (!container["ports"]) return -1;
  for (const YAML::Node& p : container["ports"]) {
    if (Str(p["name"]) == name) return p["containerPort"].as<int>();
  }
  return -1;
}
// A probe/target port (number or name) as a number, or -1.
int ResolvePort(const YAML::Node& container, const YAML::Node& port) {
  int n = -1;
  if (absl::SimpleAtoi(Str(port), &n)) return n;
  return NamedPort(container, Str(port));
}

// "20s", "500ms", "2m", "1h" -> seconds.
double Seconds(const std::string& d) {
  double v = 0;
  for (const auto& [suffix, scale] : std::vector<std::pair<std::string, double>>{
           {"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600}}) {
    if (absl::EndsWith(d, suffix) &&
        absl::SimpleAtod(absl::string_view(d).substr(0, d.size() - suffix.size()), &v)) {
      return v * scale;
    }
  }
  return -1;
}

// ---- what the binary accepts ---------------------------------------------------

struct Help {
  std::set<std::string> flags;  // "listen", "metrics-listen", ...
  std::set<std::string> env;    // "TOOLGATE_LISTEN", ...
  std::set<std::string> bools;  // flags that take no value (accept --no-X)
  std::string text;
};
const Help& ToolgatedHelp() {
  static const Help* help = [] {
    auto* h = new Help;
    CommandResult r = RunCommand({ToolgatedBin(), "--help"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    h->text = r.out;
    const std::regex flag_re(R"(^  --([a-z0-9-]+)( VALUE)?\s*$)");
    const std::regex env_re(R"(env: (TOOLGATE_[A-Z0-9_]+))");
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      const std::string l(line);
      std::smatch m;
      if (std::regex_match(l, m, flag_re)) {
        h->flags.insert(m[1]);
        if (!m[2].matched) h->bools.insert(m[1]);
      }
      if (std::regex_search(l, m, env_re)) h->env.insert(m[1]);
    }
    return h;
  }();
  return *help;
}

// Checks one "--flag" or "--flag=value" token against the help.
void ExpectKnownFlag(const std::string& token, const std::string& where) {
  std::string name(absl::StripPrefix(token, "--"));
  name = name.substr(0, name.find('='));
  const Help& help = ToolgatedHelp();
  if (help.flags.count(name)) return;
  if (absl::StartsWith(name, "no-") && help.bools.count(name.substr(3))) return;
  ADD_FAILURE() << where << ": toolgated has no flag --" << name << " (toolgated --help)";
}

// ---- the Dockerfile --------------------------------------------------------------

struct Instruction {
  std::string op;    // upper case
  std::string args;  // continuation lines joined
};
std::vector<Instruction> ParseDockerfile(const std::string& text) {
  std::vector<Instruction> out;
  std::string pending;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    std::string line(absl::StripAsciiWhitespace(raw));
    if (line.empty() || line[0] == '#') continue;
    const bool more = absl::EndsWith(line, "\\");
    if (more) line.pop_back();
    absl::StrAppend(&pending, pending.empty() ? "" : " ", line);
    if (more) continue;
    const size_t sp = pending.find_first_of(" \t");
    Instruction ins;
    ins.op = pending.substr(0, sp);
    std::transform(ins.op.begin(), ins.op.end(), ins.op.begin(), ::toupper);
    ins.args = sp == std::string::npos ? "" : std::string(absl::StripAsciiWhitespace(pending.substr(sp)));
    out.push_back(ins);
    pending.clear();
  }
  return out;
}

std::vector<std::string> Words(const std::string& s) {
  return absl::StrSplit(s, absl::ByAnyChar(" \t"), absl::SkipEmpty());
}

// The runtime (last) stage's instructions.
std::vector<Instruction> RuntimeStage(const std::vector<Instruction>& all) {
  size_t last_from = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].op == "FROM") last_from = i;
  }
  return std::vector<Instruction>(all.begin() + last_from, all.end());
}

std::map<std::string, std::string> DockerEnv(const std::vector<Instruction>& stage) {
  std::map<std::string, std::string> env;
  for (const Instruction& i : stage) {
    if (i.op != "ENV") continue;
    for (const std::string& w : Words(i.args)) {
      const size_t eq = w.find('=');
      if (eq != std::string::npos) env[w.substr(0, eq)] = w.substr(eq + 1);
    }
  }
  return env;
}

// ---- kustomize, the little that is needed -------------------------------------

// A strategic merge, as far as these manifests need it: maps merge key by
// key, a null deletes the key, lists of maps with a "name" merge entry by
// entry (new names are appended), anything else is replaced.
void Merge(YAML::Node target, const YAML::Node& patch) {
  for (const auto& kv : patch) {
    const std::string key = kv.first.as<std::string>();
    const YAML::Node value = kv.second;
    if (value.IsNull()) {
      target.remove(key);
    } else if (value.IsMap() && target[key] && target[key].IsMap()) {
      Merge(target[key], value);
    } else if (value.IsSequence() && target[key] && target[key].IsSequence() && value.size() > 0 &&
               value[0].IsMap() && value[0]["name"]) {
      YAML::Node list = target[key];
      for (const YAML::Node& item : value) {
        bool merged = false;
        for (YAML::Node existing : list) {
          if (existing.IsMap() && Str(existing["name"]) == Str(item["name"])) {
            Merge(existing, item);
            merged = true;
            break;
          }
        }
        if (!merged) list.push_back(YAML::Clone(item));
      }
    } else {
      target[key] = YAML::Clone(value);
    }
  }
}

// The objects a kustomization directory builds (resources, recursively);
// every resource must exist.
std::vector<Doc> Build(const std::string& dir, int depth = 0) {
  std::vector<Doc> out;
  const std::string kfile = dir + "/kustomization.yaml";
  if (depth > 10 || !fs::exists(kfile)) {
    ADD_FAILURE() << "no kustomization.yaml in " << Rel(dir);
    return out;
  }
  const YAML::Node k = YAML::LoadFile(kfile);
  for (const char* key : {"resources", "components"}) {
    if (!k[key]) continue;
    for (const YAML::Node& r : k[key]) {
      const std::string path = (fs::path(dir) / Str(r)).lexically_normal().string();
      if (fs::is_directory(path)) {
        for (Doc& d : Build(path, depth + 1)) out.push_back(std::move(d));
      } else if (fs::is_regular_file(path)) {
        for (Doc& d : LoadDocs(path)) out.push_back(std::move(d));
      } else {
        ADD_FAILURE() << Rel(kfile) << " lists " << key << " \"" << Str(r)
                      << "\", which does not exist";
      }
    }
  }
  // Generated ConfigMaps: one key per file, as kustomize makes them.
  if (k["configMapGenerator"]) {
    for (const YAML::Node& g : k["configMapGenerator"]) {
      YAML::Node cm;
      cm["apiVersion"] = "v1";
      cm["kind"] = "ConfigMap";
      cm["metadata"]["name"] = Str(g["name"]);
      for (const YAML::Node& file : g["files"]) {
        const std::string path = (fs::path(dir) / Str(file)).lexically_normal().string();
        EXPECT_TRUE(fs::is_regular_file(path))
            << Rel(kfile) << " generates a ConfigMap from \"" << Str(file) << "\", which does not exist";
        cm["data"][fs::path(path).filename().string()] = ReadFileOrEmpty(path);
      }
      out.push_back({kfile, cm});
    }
  }
  if (k["patches"]) {
    for (const YAML::Node& p : k["patches"]) {
      const std::string path = (fs::path(dir) / Str(p["path"])).lexically_normal().string();
      if (!fs::is_regular_file(path)) {
        ADD_FAILURE() << Rel(kfile) << " patches with \"" << Str(p["path"])
                      << "\", which does not exist";
        continue;
      }
      for (const Doc& patch : LoadDocs(path)) {
        bool applied = false;
        for (Doc& d : out) {
          if (Str(d.node["kind"]) == Str(patch.node["kind"]) &&
              Str(At(d.node, "metadata", "name")) == Str(At(patch.node, "metadata", "name"))) {
            d.node = YAML::Clone(d.node);  // Leave the files' own objects as they are.
            Merge(d.node, patch.node);
            applied = true;
          }
        }
        EXPECT_TRUE(applied) << Rel(path) << " patches " << Str(patch.node["kind"]) << "/"
                             << Str(At(patch.node, "metadata", "name")) << ", which " << Rel(kfile)
                             << " does not build";
      }
    }
  }
  return out;
}

const Doc* Find(const std::vector<Doc>& docs, const std::string& kind, const std::string& name) {
  for (const Doc& d : docs) {
    if (Str(d.node["kind"]) == kind && Str(At(d.node, "metadata", "name")) == name) return &d;
  }
  return nullptr;
}

bool LabelsMatch(const YAML::Node& selector, const YAML::Node& labels) {
  if (!selector || !selector.IsMap() || selector.size() == 0) return true;
  for (const auto& kv : selector) {
    if (!labels || !labels[kv.first.as<std::string>()] ||
        Str(labels[kv.first.as<std::string>()]) != Str(kv.second)) {
      return false;
    }
  }
  return true;
}
// The workloads whose pods a label selector (a plain map) selects.
std::vector<const Doc*> Selected(const std::vector<Doc>& docs, const YAML::Node& selector) {
  std::vector<const Doc*> out;
  for (const Doc& d : docs) {
    if (PodSpec(d.node) && LabelsMatch(selector, PodLabels(d.node))) out.push_back(&d);
  }
  return out;
}

// A Secret the kustomization creates, or that cert-manager writes for one of
// its Certificates.
bool SecretIsProvided(const std::vector<Doc>& docs, const std::string& name) {
  if (Find(docs, "Secret", name) != nullptr) return true;
  for (const Doc& d : docs) {
    if (Str(d.node["kind"]) == "Certificate" && Str(At(d.node, "spec", "secretName")) == name) {
      return true;
    }
  }
  return false;
}

// ---- tests ----------------------------------------------------------------------

TEST(DeployTest, EveryYamlFileParses) {
  const std::vector<std::string> files = YamlFilesUnder(DeployDir());
  ASSERT_GE(files.size(), 15u) << "deploy/ is missing files";
  for (const std::string& f : files) {
    SCOPED_TRACE(Rel(f));
    std::vector<Doc> docs;
    try {
      docs = LoadDocs(f);
    } catch (const YAML::Exception& e) {
      ADD_FAILURE() << Rel(f) << ": " << e.what();
      continue;
    }
    ASSERT_FALSE(docs.empty()) << Rel(f) << " is empty";
    for (const Doc& d : docs) {
      ASSERT_TRUE(d.node.IsMap()) << Rel(f);
      if (IsCompose(f)) {
        EXPECT_TRUE(d.node["services"]) << "a compose file without services";
      } else if (IsEnvoyBootstrap(f)) {
        EXPECT_TRUE(d.node["static_resources"]) << "an Envoy bootstrap without static_resources";
      } else if (IsKustomization(f)) {
        EXPECT_EQ(Str(d.node["kind"]), "Kustomization");
      } else {
        EXPECT_FALSE(Str(d.node["apiVersion"]).empty());
        EXPECT_FALSE(Str(d.node["kind"]).empty());
        EXPECT_FALSE(Str(At(d.node, "metadata", "name")).empty());
      }
    }
  }
}

TEST(DeployTest, EveryFlagAndEnvironmentVariableExistsInToolgated) {
  const Help& help = ToolgatedHelp();
  ASSERT_TRUE(help.flags.count("listen")) << help.text;
  // The manifests and the image serve metrics; the binary must have the flag.
  EXPECT_TRUE(help.flags.count("metrics-listen")) << "toolgated --help has no --metrics-listen";

  // Every TOOLGATE_* name anywhere in the deployment files (values, keys,
  // comments) must be a variable toolgated reads.
  std::vector<std::string> files = YamlFilesUnder(DeployDir());
  files.push_back(SourcePath("Dockerfile"));
  const std::regex env_re(R"(\bTOOLGATE_[A-Z0-9_]*[A-Z0-9])");
  int seen = 0;
  for (const std::string& f : files) {
    const std::string text = ReadFileOrEmpty(f);
    ASSERT_FALSE(text.empty()) << Rel(f);
    for (std::sregex_iterator it(text.begin(), text.end(), env_re), end; it != end; ++it) {
      ++seen;
      EXPECT_TRUE(help.env.count(it->str()))
          << Rel(f) << " uses " << it->str() << ", which toolgated does not read";
    }
  }
  EXPECT_GT(seen, 20);

  // Flags on toolgated's command lines: container args/command, compose
  // command, the Dockerfile's ENTRYPOINT/CMD.
  for (const ToolgatedContainer& c : ToolgatedContainers(AllObjects())) {
    for (const char* key : {"command", "args"}) {
      if (!c.container[key]) continue;
      for (const YAML::Node& a : c.container[key]) {
        if (absl::StartsWith(Str(a), "--")) ExpectKnownFlag(Str(a), c.where);
      }
    }
  }
  const YAML::Node compose = YAML::LoadFile(SourcePath("deploy/compose/compose.yaml"));
  for (const auto& kv : compose["services"]) {
    if (!absl::StrContains(Str(kv.second["image"]), "toolgated") || !kv.second["command"]) continue;
    for (const YAML::Node& a : kv.second["command"]) {
      if (absl::StartsWith(Str(a), "--")) ExpectKnownFlag(Str(a), "compose " + kv.first.as<std::string>());
    }
  }
  for (const Instruction& i : ParseDockerfile(ReadFileOrEmpty(SourcePath("Dockerfile")))) {
    if (i.op != "ENTRYPOINT" && i.op != "CMD") continue;
    for (const std::string& w : Words(i.args)) {
      std::string token(absl::StripSuffix(absl::StripPrefix(w, "[\""), "\","));
      token = std::string(absl::StripSuffix(absl::StripSuffix(token, "\"]"), "\""));
      token = std::string(absl::StripPrefix(token, "\""));
      if (absl::StartsWith(token, "--")) ExpectKnownFlag(token, "Dockerfile " + i.op);
    }
  }
}

TEST(DeployTest, ContainerAndProbePortsMatchTheListenAddresses) {
  const std::vector<ToolgatedContainer> all = ToolgatedContainers(AllObjects());
  ASSERT_GE(all.size(), 2u) << "expected toolgated in deploy/base and deploy/sidecar";
  for (const ToolgatedContainer& c : all) {
    SCOPED_TRACE(c.where);
    const auto env = Env(c.container);
    ASSERT_TRUE(env.count("TOOLGATE_LISTEN"));
    const int grpc = PortOf(env.at("TOOLGATE_LISTEN"));
    EXPECT_EQ(grpc, 50051);
    ASSERT_TRUE(env.count("TOOLGATE_METRICS_LISTEN"));
    const int metrics = PortOf(env.at("TOOLGATE_METRICS_LISTEN"));
    EXPECT_EQ(metrics, 9090);
    EXPECT_EQ(NamedPort(c.container, "metrics"), metrics)
        << "containerPort \"metrics\" != TOOLGATE_METRICS_LISTEN";
    // The admin port is on loopback, never a container port.
    ASSERT_TRUE(env.count("TOOLGATE_ADMIN_LISTEN"));
    const std::string admin = env.at("TOOLGATE_ADMIN_LISTEN");
    EXPECT_TRUE(absl::StartsWith(admin, "127.0.0.1:")) << admin;
    for (const YAML::Node& p : c.container["ports"]) {
      EXPECT_NE(p["containerPort"].as<int>(), PortOf(admin)) << "the admin port is exposed";
    }
    if (absl::StartsWith(env.at("TOOLGATE_LISTEN"), "127.0.0.1:")) {
      // Loopback (the sidecar): the kubelet cannot reach it, so no container
      // port, and the probes run the CLI in the container against the
      // decision listener's health service (NOT_SERVING while draining).
      EXPECT_EQ(NamedPort(c.container, "grpc"), -1);
      for (const char* probe : {"startupProbe", "readinessProbe", "livenessProbe"}) {
        SCOPED_TRACE(probe);
        const YAML::Node cmd = At(c.container, probe, "exec", "command");
        ASSERT_TRUE(cmd) << "not an exec probe";
        const auto argv = cmd.as<std::vector<std::string>>();
        ASSERT_GE(argv.size(), 4u);
        EXPECT_EQ(argv[0], "/usr/local/bin/toolgate");
        EXPECT_EQ(argv[1], "health");
        EXPECT_THAT(argv, Contains(env.at("TOOLGATE_LISTEN")));
      }
    } else {
      EXPECT_EQ(NamedPort(c.container, "grpc"), grpc)
          << "containerPort \"grpc\" != TOOLGATE_LISTEN";
      // The kubelet probes the pod IP: the server must listen on every interface.
      EXPECT_TRUE(absl::StartsWith(env.at("TOOLGATE_LISTEN"), "0.0.0.0:"));
      for (const char* probe : {"readinessProbe", "livenessProbe"}) {
        SCOPED_TRACE(probe);
        ASSERT_TRUE(c.container[probe]) << "missing";
        ASSERT_TRUE(At(c.container, probe, "grpc")) << "not a native gRPC probe";
        EXPECT_EQ(ResolvePort(c.container, At(c.container, probe, "grpc", "port")), grpc);
      }
      if (At(c.container, "startupProbe", "grpc")) {
        EXPECT_EQ(ResolvePort(c.container, At(c.container, "startupProbe", "grpc", "port")), grpc);
      }
    }
    // Resources: requests and limits for CPU and memory.
    for (const char* k : {"requests", "limits"}) {
      EXPECT_TRUE(At(c.container, "resources", k, "cpu")) << k;
      EXPECT_TRUE(At(c.container, "resources", k, "memory")) << k;
    }
  }

  // Every Service port reaches a container port of the pods it selects.
  for (const Doc& svc : AllObjects()) {
    if (Str(svc.node["kind"]) != "Service") continue;
    SCOPED_TRACE(Rel(svc.file) + ": Service/" + Str(At(svc.node, "metadata", "name")));
    const std::vector<Doc> here = Build(fs::path(svc.file).parent_path().string());
    const auto pods = Selected(here, At(svc.node, "spec", "selector"));
    ASSERT_FALSE(pods.empty()) << "selects no workload";
    for (const YAML::Node& p : svc.node["spec"]["ports"]) {
      const YAML::Node target = p["targetPort"] ? p["targetPort"] : p["port"];
      for (const Doc* w : pods) {
        bool found = false;
        for (const YAML::Node& c : Containers(PodSpec(w->node))) {
          const int port = ResolvePort(c, target);
          if (port > 0 && c["ports"]) {
            for (const YAML::Node& cp : c["ports"]) found |= cp["containerPort"].as<int>() == port;
          }
        }
        EXPECT_TRUE(found) << "port " << Str(p["name"]) << " targets " << Str(target)
                           << ", which no container of " << Str(At(w->node, "metadata", "name"))
                           << " has";
      }
    }
  }

  // Compose: the published container ports are the ones toolgated listens on.
  const YAML::Node compose = YAML::LoadFile(SourcePath("deploy/compose/compose.yaml"));
  for (const auto& kv : compose["services"]) {
    if (!absl::StrContains(Str(kv.second["image"]), "toolgated")) continue;
    SCOPED_TRACE("compose " + kv.first.as<std::string>());
    const YAML::Node env = kv.second["environment"];
    std::set<int> published;
    for (const YAML::Node& p : kv.second["ports"]) published.insert(PortOf(Str(p)));
    EXPECT_TRUE(published.count(PortOf(Str(env["TOOLGATE_LISTEN"]))));
    EXPECT_TRUE(published.count(PortOf(Str(env["TOOLGATE_METRICS_LISTEN"]))));
  }
}

TEST(DeployTest, TheImageIsNamedTheSameEverywhere) {
  std::set<std::string> images;
  std::vector<std::string> where;
  const auto add = [&](const std::string& image, const std::string& at) {
    images.insert(image);
    where.push_back(at + ": " + image);
  };
  for (const ToolgatedContainer& c : ToolgatedContainers(AllObjects())) {
    add(Str(c.container["image"]), c.where);
  }
  const YAML::Node compose = YAML::LoadFile(SourcePath("deploy/compose/compose.yaml"));
  int compose_servers = 0;
  for (const auto& kv : compose["services"]) {
    if (!absl::StartsWith(kv.first.as<std::string>(), "toolgated")) continue;
    ++compose_servers;
    add(Str(kv.second["image"]), "compose " + kv.first.as<std::string>());
  }
  EXPECT_EQ(compose_servers, 3);
  // Kustomizations that pin the image name it the same way.
  for (const std::string& f : YamlFilesUnder(DeployDir())) {
    if (!IsKustomization(f)) continue;
    const YAML::Node k = YAML::LoadFile(f);
    if (!k["images"]) continue;
    for (const YAML::Node& i : k["images"]) {
      if (!absl::StrContains(Str(i["name"]), "toolgated")) continue;
      const std::string name = i["newName"] ? Str(i["newName"]) : Str(i["name"]);
      add(absl::StrCat(name, ":", Str(i["newTag"])), Rel(f));
    }
  }
  // The name the Dockerfile tells users to build.
  const std::string dockerfile = ReadFileOrEmpty(SourcePath("Dockerfile"));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(dockerfile, m, std::regex(R"(docker build -t (\S+) \.)")));
  add(m[1], "Dockerfile");
  EXPECT_EQ(images.size(), 1u) << absl::StrJoin(where, "\n");
  // Tagged with the project's version.
  const std::string cmake = ReadFileOrEmpty(SourcePath("CMakeLists.txt"));
  ASSERT_TRUE(std::regex_search(cmake, m, std::regex(R"(project\(toolgate VERSION ([0-9.]+))")));
  EXPECT_TRUE(absl::EndsWith(*images.begin(), ":" + m[1].str())) << *images.begin();
}

TEST(DeployTest, ThePolicyConfigMapIsMountedWhereTOOLGATE_POLICYPoints) {
  TempDir tmp;
  int linted = 0;
  for (const ToolgatedContainer& c : ToolgatedContainers(AllObjects())) {
    SCOPED_TRACE(c.where);
    const auto env = Env(c.container);
    ASSERT_TRUE(env.count("TOOLGATE_POLICY"));
    const std::string policy = env.at("TOOLGATE_POLICY");
    // A directory mount of the ConfigMap: TOOLGATE_POLICY is the mount path
    // itself, and no subPath (the kubelet never updates subPath mounts).
    YAML::Node mount;
    for (const YAML::Node& m : c.container["volumeMounts"]) {
      if (Str(m["mountPath"]) == policy) mount = m;
    }
    ASSERT_TRUE(mount) << "no volumeMount at TOOLGATE_POLICY=" << policy;
    EXPECT_FALSE(mount["subPath"]) << "a subPath mount is never updated: no hot reload";
    EXPECT_EQ(Str(mount["readOnly"]), "true");
    YAML::Node volume;
    for (const YAML::Node& v : c.pod["volumes"]) {
      if (Str(v["name"]) == Str(mount["name"])) volume = v;
    }
    ASSERT_TRUE(volume && volume["configMap"]) << "the policy volume is not a ConfigMap";
    EXPECT_FALSE(volume["configMap"]["items"]) << "mount every key of the ConfigMap";
    const std::string cm_name = Str(volume["configMap"]["name"]);
    const std::vector<Doc> here = Build(fs::path(c.file).parent_path().string());
    const Doc* cm = Find(here, "ConfigMap", cm_name);
    ASSERT_NE(cm, nullptr) << "ConfigMap " << cm_name << " is not in the same kustomization";
    // The ConfigMap's policy passes the server's own loader.
    const std::string dir = tmp.path() + "/" + cm_name;
    fs::create_directories(dir);
    int files = 0;
    for (const auto& kv : cm->node["data"]) {
      const std::string key = kv.first.as<std::string>();
      if (absl::EndsWith(key, ".yaml") || absl::EndsWith(key, ".yml") || absl::EndsWith(key, ".json")) {
        std::ofstream(dir + "/" + key) << Str(kv.second);
        ++files;
      }
    }
    ASSERT_GT(files, 0) << "ConfigMap " << cm_name << " has no policy file";
    CommandResult r = RunCommand({CliBin(), "lint", dir});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    ++linted;
  }
  EXPECT_GE(linted, 2);

  // Compose mounts the policy read-only under TOOLGATE_POLICY.
  const YAML::Node compose = YAML::LoadFile(SourcePath("deploy/compose/compose.yaml"));
  for (const auto& kv : compose["services"]) {
    if (!absl::StrContains(Str(kv.second["image"]), "toolgated")) continue;
    const std::string policy = Str(At(kv.second, "environment", "TOOLGATE_POLICY"));
    bool mounted = false;
    for (const YAML::Node& v : kv.second["volumes"]) {
      std::vector<std::string> parts = absl::StrSplit(Str(v), ':');
      if (parts.size() >= 2 && absl::StartsWith(policy, parts[1]) && parts.back() == "ro") {
        mounted = true;
        const fs::path host = fs::path(SourcePath("deploy/compose")) / parts[0];
        EXPECT_TRUE(fs::exists(host / fs::path(policy).lexically_relative(parts[1])))
            << "compose " << kv.first << ": " << policy << " is not in " << parts[0];
      }
    }
    EXPECT_TRUE(mounted) << "compose " << kv.first << ": nothing mounted at " << policy;
  }
}

TEST(DeployTest, ContainersRunAsNonRootWithAReadOnlyRoot) {
  int checked = 0;
  for (const Doc& d : AllObjects()) {
    const YAML::Node pod = PodSpec(d.node);
    if (!pod) continue;
    for (const YAML::Node& c : Containers(pod)) {
      SCOPED_TRACE(Rel(d.file) + ": container " + Str(c["name"]));
      const YAML::Node sc = c["securityContext"];
      const YAML::Node psc = pod["securityContext"];
      const auto effective = [&](const char* key) {
        return sc && sc[key] ? Str(sc[key]) : psc && psc[key] ? Str(psc[key]) : std::string();
      };
      EXPECT_EQ(effective("runAsNonRoot"), "true");
      EXPECT_NE(effective("runAsUser"), "0");
      if (IsToolgated(c)) {
        EXPECT_EQ(effective("runAsUser"), "10001");  // The image's user.
      }
      ASSERT_TRUE(sc) << "no securityContext";
      EXPECT_EQ(Str(sc["readOnlyRootFilesystem"]), "true");
      EXPECT_EQ(Str(sc["allowPrivilegeEscalation"]), "false");
      std::vector<std::string> drop;
      if (sc["capabilities"] && sc["capabilities"]["drop"]) {
        drop = sc["capabilities"]["drop"].as<std::vector<std::string>>();
      }
      EXPECT_THAT(drop, Contains("ALL"));
      ++checked;
    }
  }
  EXPECT_GE(checked, 4);
  const YAML::Node compose = YAML::LoadFile(SourcePath("deploy/compose/compose.yaml"));
  for (const auto& kv : compose["services"]) {
    if (!absl::StrContains(Str(kv.second["image"]), "toolgated")) continue;
    EXPECT_TRUE(absl::StartsWith(Str(kv.second["user"]), "10001")) << kv.first;
    EXPECT_EQ(Str(kv.second["read_only"]), "true") << kv.first;
  }
}

TEST(DeployTest, KustomizationsListResourcesThatExistAndReferencesResolve) {
  // Kustomizations no other one includes, and overlays, are what users
  // apply: everything they refer to must be in them. (The base leaves the Redis Secret to its
  // overlay or to the operator.)
  std::set<std::string> included;
  for (const std::string& f : YamlFilesUnder(DeployDir())) {
    if (!IsKustomization(f)) continue;
    const YAML::Node k = YAML::LoadFile(f);
    for (const char* key : {"resources", "components"}) {
      if (!k[key]) continue;
      for (const YAML::Node& r : k[key]) {
        included.insert((fs::path(f).parent_path() / Str(r)).lexically_normal().string());
      }
    }
  }
  int dirs = 0, top = 0;
  for (const std::string& f : YamlFilesUnder(DeployDir())) {
    if (!IsKustomization(f)) continue;
    ++dirs;
    const std::string dir = fs::path(f).parent_path().string();
    SCOPED_TRACE(Rel(dir));
    const std::vector<Doc> built = Build(dir);
    ASSERT_FALSE(built.empty());
    // No object twice.
    std::set<std::string> ids;
    for (const Doc& d : built) {
      const std::string id = Str(d.node["kind"]) + "/" + Str(At(d.node, "metadata", "name"));
      EXPECT_TRUE(ids.insert(id).second) << id << " twice";
    }
    // (An overlay is applied by users even when another overlay builds on it.)
    const bool complete = !included.count(fs::path(dir).lexically_normal().string()) ||
                          absl::StrContains(dir, "/deploy/overlays/");
    top += complete;
    for (const Doc& d : built) {
      const std::string what = Str(d.node["kind"]) + "/" + Str(At(d.node, "metadata", "name"));
      if (const YAML::Node pod = PodSpec(d.node)) {
        const std::string sa = Str(pod["serviceAccountName"]);
        if (!sa.empty()) {
          EXPECT_NE(Find(built, "ServiceAccount", sa), nullptr) << what << ": " << sa;
        }
        if (pod["volumes"]) {
          for (const YAML::Node& v : pod["volumes"]) {
            if (v["configMap"]) {
              EXPECT_NE(Find(built, "ConfigMap", Str(v["configMap"]["name"])), nullptr) << what;
            }
            std::vector<std::string> secrets;
            if (v["secret"]) secrets.push_back(Str(v["secret"]["secretName"]));
            if (At(v, "projected", "sources")) {
              for (const YAML::Node& src : v["projected"]["sources"]) {
                if (src["secret"]) secrets.push_back(Str(src["secret"]["name"]));
              }
            }
            for (const std::string& name : secrets) {
              if (complete) {
                EXPECT_TRUE(SecretIsProvided(built, name)) << what << ": Secret " << name;
              }
            }
          }
        }
        for (const YAML::Node& c : Containers(pod)) {
          if (!c["env"]) continue;
          for (const YAML::Node& e : c["env"]) {
            if (const YAML::Node cm = At(e, "valueFrom", "configMapKeyRef"); cm && complete) {
              const Doc* m = Find(built, "ConfigMap", Str(cm["name"]));
              ASSERT_NE(m, nullptr) << what << ": ConfigMap " << Str(cm["name"]);
              EXPECT_TRUE(At(m->node, "data", Str(cm["key"])))
                  << "ConfigMap " << Str(cm["name"]) << " has no key " << Str(cm["key"]);
            }
            const YAML::Node ref = At(e, "valueFrom", "secretKeyRef");
            if (!ref || !complete) continue;
            const Doc* s = Find(built, "Secret", Str(ref["name"]));
            ASSERT_NE(s, nullptr) << what << ": Secret " << Str(ref["name"]);
            const std::string key = Str(ref["key"]);
            EXPECT_TRUE(At(s->node, "stringData", key) || At(s->node, "data", key))
                << "Secret " << Str(ref["name"]) << " has no key " << key;
          }
        }
      }
      const std::string kind = Str(d.node["kind"]);
      if (kind == "HorizontalPodAutoscaler") {
        const YAML::Node t = d.node["spec"]["scaleTargetRef"];
        EXPECT_NE(Find(built, Str(t["kind"]), Str(t["name"])), nullptr) << what;
      }
      if (kind == "PodDisruptionBudget" || kind == "NetworkPolicy") {
        const YAML::Node sel = kind == "NetworkPolicy" ? At(d.node, "spec", "podSelector", "matchLabels")
                                                       : At(d.node, "spec", "selector", "matchLabels");
        EXPECT_FALSE(Selected(built, sel).empty()) << what << " selects no pod";
      }
      // A NetworkPolicy peer in the same namespace must be a pod that exists.
      if (kind == "NetworkPolicy" && complete) {
        for (const YAML::Node& rule : d.node["spec"]["ingress"]) {
          if (!rule["from"]) continue;
          for (const YAML::Node& peer : rule["from"]) {
            if (peer["podSelector"] && !peer["namespaceSelector"]) {
              EXPECT_FALSE(Selected(built, At(peer, "podSelector", "matchLabels")).empty())
                  << what << " admits pods that this kustomization does not run";
            }
          }
        }
      }
    }
  }
  EXPECT_GE(dirs, 4);
  EXPECT_EQ(top, 4)
      << "deploy/overlays/cluster, deploy/overlays/tls, deploy/sidecar and deploy/envoy";
}

TEST(DeployTest, TheClusterDeploymentHasTheExpectedShape) {
  const std::vector<Doc> base = Build(SourcePath("deploy/base"));
  const Doc* dep = Find(base, "Deployment", "toolgate");
  ASSERT_NE(dep, nullptr);
  EXPECT_EQ(dep->node["spec"]["replicas"].as<int>(), 3);
  const YAML::Node pod = PodSpec(dep->node);
  EXPECT_GT(pod["topologySpreadConstraints"].size(), 0u);
  // The kubelet must not SIGKILL a server that is still draining.
  const ToolgatedContainer c = ToolgatedContainers(base).at(0);
  const auto env = Env(c.container);
  ASSERT_TRUE(env.count("TOOLGATE_SHUTDOWN_GRACE"));
  double pre_stop = 0;
  if (const YAML::Node cmd_node = At(c.container, "lifecycle", "preStop", "exec", "command")) {
    const auto cmd = cmd_node.as<std::vector<std::string>>();
    if (cmd.size() == 2 && absl::EndsWith(cmd[0], "sleep")) absl::SimpleAtod(cmd[1], &pre_stop);
  }
  // The delay lets endpoints drop the pod before it refuses calls.
  ASSERT_TRUE(env.count("TOOLGATE_SHUTDOWN_DELAY"));
  EXPECT_GE(Seconds(env.at("TOOLGATE_SHUTDOWN_DELAY")), 1);
  EXPECT_GT(pod["terminationGracePeriodSeconds"].as<double>(),
            Seconds(env.at("TOOLGATE_SHUTDOWN_GRACE")) +
                Seconds(env.at("TOOLGATE_SHUTDOWN_DELAY")) + pre_stop);
  EXPECT_EQ(env.at("TOOLGATE_POLICY"), "/etc/toolgate");

  // A ClusterIP Service with grpc and metrics, and a headless one.
  const Doc* svc = Find(base, "Service", "toolgate");
  ASSERT_NE(svc, nullptr);
  EXPECT_TRUE(!At(svc->node, "spec", "type") || Str(At(svc->node, "spec", "type")) == "ClusterIP");
  std::map<std::string, int> ports;
  for (const YAML::Node& p : svc->node["spec"]["ports"]) ports[Str(p["name"])] = p["port"].as<int>();
  EXPECT_EQ(ports["grpc"], 50051);
  EXPECT_EQ(ports["metrics"], 9090);
  int headless = 0;
  for (const Doc& d : base) {
    if (Str(d.node["kind"]) == "Service" && Str(At(d.node, "spec", "clusterIP")) == "None") ++headless;
  }
  EXPECT_EQ(headless, 1);
  EXPECT_NE(Find(base, "HorizontalPodAutoscaler", "toolgate"), nullptr);
  EXPECT_NE(Find(base, "PodDisruptionBudget", "toolgate"), nullptr);

  // The NetworkPolicy admits gateways on 50051 and Prometheus on 9090, and
  // nothing else.
  const Doc* np = Find(base, "NetworkPolicy", "toolgate");
  ASSERT_NE(np, nullptr);
  std::set<int> gateway_ports, other_ports;
  for (const YAML::Node& rule : np->node["spec"]["ingress"]) {
    ASSERT_TRUE(rule["from"]) << "a rule admitting everyone";
    bool gateway = false;
    for (const YAML::Node& peer : rule["from"]) {
      const bool is_gateway =
          Str(At(peer, "podSelector", "matchLabels", "toolgate.dev/gateway")) == "true";
      if (is_gateway) {
        EXPECT_EQ(Str(At(peer, "namespaceSelector", "matchLabels", "toolgate.dev/gateways")),
                  "true")
            << "gateways are admitted from labelled namespaces only";
      }
      gateway |= is_gateway;
    }
    for (const YAML::Node& p : rule["ports"]) {
      (gateway ? gateway_ports : other_ports).insert(p["port"].as<int>());
    }
  }
  EXPECT_EQ(gateway_ports, std::set<int>{50051});
  EXPECT_EQ(other_ports, std::set<int>{9090});

  // The cluster overlay runs the servers against the development Redis.
  const std::vector<Doc> cluster = Build(SourcePath("deploy/overlays/cluster"));
  const Doc* redis_config = Find(cluster, "ConfigMap", "toolgate-redis");
  ASSERT_NE(redis_config, nullptr);
  const std::string url = Str(At(redis_config->node, "data", "url"));
  EXPECT_TRUE(absl::StartsWith(url, "redis://toolgate-redis:6379")) << url;
  EXPECT_FALSE(absl::StrContains(url, "@")) << "a password in the URL";
  EXPECT_NE(Find(cluster, "Secret", "toolgate-redis-auth"), nullptr);
  EXPECT_NE(Find(cluster, "StatefulSet", "toolgate-redis"), nullptr);
  EXPECT_NE(Find(cluster, "Service", "toolgate-redis"), nullptr);
}

TEST(DeployTest, TheDockerfileBuildsWithTheScriptsAndRunsAsNonRoot) {
  const std::string text = ReadFileOrEmpty(SourcePath("Dockerfile"));
  ASSERT_FALSE(text.empty());
  const std::vector<Instruction> all = ParseDockerfile(text);
  std::vector<std::string> froms;
  for (const Instruction& i : all) {
    if (i.op == "FROM") froms.push_back(Words(i.args).at(0));
  }
  ASSERT_EQ(froms.size(), 2u) << "a build stage and a runtime stage";
  for (const std::string& f : froms) EXPECT_EQ(f, "debian:bookworm-slim");
  EXPECT_THAT(text, ::testing::HasSubstr("scripts/install-deps.sh"));
  EXPECT_THAT(text, ::testing::HasSubstr("scripts/build.sh"));
  EXPECT_THAT(text, ::testing::HasSubstr("-DTOOLGATE_BUILD_TESTS=OFF"));
  EXPECT_THAT(text, ::testing::HasSubstr("BUILD_TYPE=Release"));
  for (const char* script : {"scripts/install-deps.sh", "scripts/build.sh"}) {
    EXPECT_TRUE(fs::exists(SourcePath(script))) << script;
  }

  const std::vector<Instruction> runtime = RuntimeStage(all);
  std::string user;
  std::set<int> exposed;
  std::vector<std::string> entrypoint, copied_from_build;
  for (const Instruction& i : runtime) {
    if (i.op == "USER") user = i.args;
    if (i.op == "EXPOSE") {
      for (const std::string& w : Words(i.args)) exposed.insert(std::stoi(w));
    }
    if (i.op == "ENTRYPOINT") entrypoint = Words(i.args);
    if (i.op == "COPY" && absl::StartsWith(i.args, "--from=")) {
      std::vector<std::string> w = Words(i.args);
      copied_from_build.assign(w.begin() + 1, w.end() - 1);
    }
  }
  // Non-root, by number (Kubernetes' runAsNonRoot can only verify a number).
  const std::string uid = user.substr(0, user.find(':'));
  EXPECT_EQ(uid, "10001");
  ASSERT_FALSE(entrypoint.empty());
  EXPECT_THAT(entrypoint[0], ::testing::HasSubstr("toolgated"));
  std::vector<std::string> binaries;
  for (const std::string& p : copied_from_build) binaries.push_back(fs::path(p).filename());
  EXPECT_THAT(binaries, ::testing::UnorderedElementsAre("toolgated", "toolgate"));
  const auto env = DockerEnv(runtime);
  ASSERT_TRUE(env.count("TOOLGATE_LISTEN"));
  ASSERT_TRUE(env.count("TOOLGATE_METRICS_LISTEN"));
  ASSERT_TRUE(env.count("TOOLGATE_POLICY"));
  EXPECT_EQ(exposed, (std::set<int>{PortOf(env.at("TOOLGATE_LISTEN")),
                                    PortOf(env.at("TOOLGATE_METRICS_LISTEN"))}));
  EXPECT_EQ(exposed, (std::set<int>{50051, 9090}));
  // The default policy path is a file the image has.
  bool policy_copied = false;
  for (const Instruction& i : runtime) {
    if (i.op == "COPY" && absl::EndsWith(i.args, " " + env.at("TOOLGATE_POLICY"))) {
      policy_copied = fs::exists(SourcePath(Words(i.args).at(0)));
    }
  }
  EXPECT_TRUE(policy_copied) << "TOOLGATE_POLICY=" << env.at("TOOLGATE_POLICY")
                             << " is not copied into the image";

  // Build trees stay out of the build context.
  const std::string ignore = ReadFileOrEmpty(SourcePath(".dockerignore"));
  std::set<std::string> ignored;
  for (absl::string_view l : absl::StrSplit(ignore, '\n')) ignored.insert(std::string(l));
  EXPECT_TRUE(ignored.count("build") && ignored.count("build-*")) << ignore;
  EXPECT_TRUE(ignored.count(".git"));
}

// Every shared library toolgated links comes from a Debian package the
// runtime stage installs (or from the base image).
TEST(DeployTest, TheRuntimeStageInstallsEveryLibraryToolgatedLinks) {
  if (RunCommand({"/usr/bin/dpkg-query", "--version"}).exit_code != 0) {
    GTEST_SKIP() << "no dpkg here";
  }
  std::set<std::string> installed;
  for (const Instruction& i : RuntimeStage(ParseDockerfile(ReadFileOrEmpty(SourcePath("Dockerfile"))))) {
    if (i.op != "RUN" || !absl::StrContains(i.args, "apt-get install")) continue;
    for (const std::string& w : Words(i.args)) installed.insert(w);
  }
  ASSERT_FALSE(installed.empty());
  // lib path (as ldd prints it) -> which binary links it.
  std::map<std::string, std::string> libs;
  for (const std::string& bin : {ToolgatedBin(), CliBin()}) {
    CommandResult ldd = RunCommand({"/usr/bin/ldd", bin});
    ASSERT_EQ(ldd.exit_code, 0) << ldd.err;
    for (absl::string_view line : absl::StrSplit(ldd.out, '\n')) {
      const size_t arrow = line.find("=> /");
      if (arrow == absl::string_view::npos) continue;
      std::string lib(line.substr(arrow + 3));
      lib = lib.substr(0, lib.find(' '));
      // Sanitizer runtimes come with a sanitizer build, never into the image.
      if (absl::StrContains(lib, "libasan") || absl::StrContains(lib, "libubsan")) continue;
      libs.emplace(lib, fs::path(bin).filename().string());
    }
  }
  ASSERT_GT(libs.size(), 5u);
  // One dpkg -S for all of them (by real path: merged /usr), then by the
  // path ldd printed for any it did not know.
  std::map<std::string, std::string> owner;  // lib -> package
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<std::string> argv = {"/usr/bin/dpkg", "-S"};
    std::map<std::string, std::string> query;  // queried path -> lib
    for (const auto& [lib, bin] : libs) {
      if (owner.count(lib)) continue;
      std::error_code ec;
      const std::string path = pass == 0 ? fs::canonical(lib, ec).string() : lib;
      query[path] = lib;
      argv.push_back(path);
    }
    if (query.empty()) break;
    CommandResult r = RunCommand(argv, {}, absl::Seconds(60));
    for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
      const size_t sep = line.find(": /");
      if (sep == absl::string_view::npos) continue;
      const std::string path(line.substr(sep + 2));
      std::string pkg(line.substr(0, sep));
      pkg = pkg.substr(0, pkg.find_first_of(":,"));
      if (query.count(path)) owner[query[path]] = pkg;
    }
  }
  // In debian:bookworm-slim already.
  const std::set<std::string> base = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"};
  for (const auto& [lib, bin] : libs) {
    ASSERT_TRUE(owner.count(lib)) << "no package owns " << lib;
    if (base.count(owner[lib])) continue;
    EXPECT_TRUE(installed.count(owner[lib]))
        << bin << " links " << lib << " from " << owner[lib]
        << ", which the image does not install";
  }
}

TEST(DeployTest, ComposeRunsThreeServersOnOneRedis) {
  const YAML::Node compose = YAML::LoadFile(SourcePath("deploy/compose/compose.yaml"));
  std::set<std::string> host_ports;
  int servers = 0;
  for (const auto& kv : compose["services"]) {
    const std::string name = kv.first.as<std::string>();
    if (!absl::StartsWith(name, "toolgated")) continue;
    ++servers;
    const std::string url = Str(At(kv.second, "environment", "TOOLGATE_REDIS"));
    ASSERT_TRUE(absl::StartsWith(url, "redis://")) << name;
    const std::string host = url.substr(8, url.find(':', 8) - 8);
    EXPECT_TRUE(compose["services"][host]) << name << ": no service " << host;
    EXPECT_GT(Seconds(Str(kv.second["stop_grace_period"])),
              Seconds(Str(At(kv.second, "environment", "TOOLGATE_SHUTDOWN_GRACE"))))
        << name;
    for (const YAML::Node& p : kv.second["ports"]) {
      const std::string mapping = Str(p);
      EXPECT_TRUE(absl::StartsWith(mapping, "127.0.0.1:")) << name << ": " << mapping;
      const std::string host_part = mapping.substr(0, mapping.rfind(':'));
      EXPECT_TRUE(host_ports.insert(host_part).second) << host_part << " published twice";
    }
  }
  EXPECT_EQ(servers, 3);
}

// ---- secrets, exposure and TLS ---------------------------------------------------

// Every value of every Secret under deploy/ (stringData, and data as
// written: base64), but user names.
std::set<std::string> SecretValues() {
  std::set<std::string> out;
  for (const Doc& d : AllObjects()) {
    if (Str(d.node["kind"]) != "Secret") continue;
    for (const char* key : {"stringData", "data"}) {
      if (!d.node[key]) continue;
      for (const auto& kv : d.node[key]) {
        if (kv.first.as<std::string>() != "username") out.insert(Str(kv.second));
      }
    }
  }
  return out;
}

// The file a container sees at `path`: (volume, key within it), from its
// volumeMounts; volume is undefined when no mount covers the path.
std::pair<YAML::Node, std::string> VolumeFileAt(const YAML::Node& pod, const YAML::Node& container,
                                                const std::string& path) {
  if (!container["volumeMounts"]) return {};
  for (const YAML::Node& m : container["volumeMounts"]) {
    const std::string dir = Str(m["mountPath"]) + "/";
    if (!absl::StartsWith(path, dir)) continue;
    for (const YAML::Node& v : pod["volumes"]) {
      if (Str(v["name"]) == Str(m["name"])) return {v, path.substr(dir.size())};
    }
  }
  return {};
}

// The keys a secret volume provides: a Secret's keys (stringData/data), or
// cert-manager's tls.crt, tls.key, ca.crt for a Certificate's Secret.
std::set<std::string> SecretKeys(const std::vector<Doc>& docs, const std::string& name) {
  std::set<std::string> keys;
  if (const Doc* s = Find(docs, "Secret", name)) {
    for (const char* key : {"stringData", "data"}) {
      if (!s->node[key]) continue;
      for (const auto& kv : s->node[key]) keys.insert(kv.first.as<std::string>());
    }
  }
  if (SecretIsProvided(docs, name) && keys.empty()) keys = {"tls.crt", "tls.key", "ca.crt"};
  return keys;
}

// Checks that `path` is a file of a mounted Secret (one that `docs` create or
// cert-manager writes). `secret_name` receives the Secret's name.
void ExpectSecretFile(const std::vector<Doc>& docs, const ToolgatedContainer& c,
                      const std::string& path, std::string* secret_name = nullptr) {
  SCOPED_TRACE(path);
  auto [volume, key] = VolumeFileAt(c.pod, c.container, path);
  ASSERT_TRUE(volume) << "no volume is mounted at " << path;
  ASSERT_TRUE(volume["secret"]) << "the volume at " << path << " is not a Secret";
  const std::string name = Str(volume["secret"]["secretName"]);
  if (secret_name != nullptr) *secret_name = name;
  if (volume["secret"]["items"]) {
    bool found = false;
    for (const YAML::Node& item : volume["secret"]["items"]) {
      if (Str(item["path"]) == key) key = Str(item["key"]), found = true;
    }
    ASSERT_TRUE(found) << "the Secret's items do not hold " << key;
  }
  EXPECT_TRUE(SecretKeys(docs, name).count(key)) << "Secret " << name << " has no key " << key;
}

TEST(DeployTest, RedisDevRequiresPasswordsFromSecretsAndLimitsToolgatesUser) {
  const std::vector<Doc> redis = Build(SourcePath("deploy/redis-dev"));
  const Doc* config = Find(redis, "ConfigMap", "toolgate-redis-config");
  ASSERT_NE(config, nullptr);
  const std::string conf = Str(At(config->node, "data", "redis.conf"));
  EXPECT_THAT(conf, HasSubstr("aclfile /data/users.acl"));
  EXPECT_FALSE(absl::StrContains(conf, "requirepass")) << "passwords belong in the Secrets";
  std::map<std::string, std::vector<std::string>> users;
  for (absl::string_view line :
       absl::StrSplit(Str(At(config->node, "data", "users.acl")), '\n', absl::SkipEmpty())) {
    std::vector<std::string> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    ASSERT_GE(w.size(), 3u) << line;
    ASSERT_EQ(w[0], "user") << line;
    for (const std::string& rule : w) {
      EXPECT_FALSE(absl::StartsWith(rule, ">") || absl::StartsWith(rule, "#") || rule == "nopass")
          << "a password (or none) in the ConfigMap: " << line;
    }
    users[w[1]] = std::vector<std::string>(w.begin() + 2, w.end());
  }
  EXPECT_EQ(users["default"], std::vector<std::string>{"off"});
  for (const std::string user : {"toolgate", "toolgate-admin"}) {
    SCOPED_TRACE(user);
    ASSERT_TRUE(users.count(user));
    const auto& rules = users[user];
    EXPECT_THAT(rules, Contains("-@all"));
    EXPECT_THAT(rules, Contains("resetkeys"));
    EXPECT_THAT(rules, Contains("resetchannels"));
    for (const std::string& r : rules) {
      if (absl::StartsWith(r, "~") || absl::StartsWith(r, "%")) {
        EXPECT_TRUE(absl::StrContains(r, "~toolgate:")) << "a key pattern beyond toolgate's: " << r;
      }
      if (absl::StartsWith(r, "&")) {
        EXPECT_EQ(r, "&toolgate:policy:events");
      }
      EXPECT_FALSE(absl::StartsWith(r, "+@")) << "a whole command category: " << r;
      for (const char* risky : {"+flushall", "+flushdb", "+config", "+keys", "+acl", "+debug",
                                "+module", "+shutdown", "+script|flush"}) {
        EXPECT_NE(r, risky);
      }
    }
  }
  // The servers read policy revisions but cannot write them.
  EXPECT_THAT(users["toolgate"], Contains("%R~toolgate:policy:*"));
  EXPECT_THAT(users["toolgate"], Not(Contains("~toolgate:*")));
  for (const char* cmd : {"+evalsha", "+eval", "+script|load", "+get", "+hgetall", "+subscribe"}) {
    EXPECT_THAT(users["toolgate"], Contains(cmd));
  }

  // The pod builds its ACL file from the ConfigMap and the Secrets.
  const Doc* sts = Find(redis, "StatefulSet", "toolgate-redis");
  ASSERT_NE(sts, nullptr);
  const YAML::Node pod = PodSpec(sts->node);
  const YAML::Node redis_container = Containers(pod).at(0);
  EXPECT_EQ(redis_container["command"].as<std::vector<std::string>>(),
            (std::vector<std::string>{"sh", "/etc/redis/start.sh"}));
  EXPECT_THAT(Str(At(config->node, "data", "start.sh")), HasSubstr("/run/redis-users/"));
  std::set<std::string> from_secrets;
  for (const YAML::Node& v : pod["volumes"]) {
    if (!At(v, "projected", "sources")) continue;
    for (const YAML::Node& src : v["projected"]["sources"]) {
      const std::string name = Str(At(src, "secret", "name"));
      ASSERT_NE(Find(redis, "Secret", name), nullptr) << name;
      EXPECT_TRUE(At(Find(redis, "Secret", name)->node, "stringData", "password")) << name;
      for (const YAML::Node& item : src["secret"]["items"]) from_secrets.insert(Str(item["path"]));
    }
  }
  EXPECT_EQ(from_secrets, (std::set<std::string>{"toolgate", "toolgate-admin"}));
  // The Secrets name the ACL users.
  EXPECT_EQ(Str(At(Find(redis, "Secret", "toolgate-redis-auth")->node, "stringData", "username")),
            "toolgate");
  EXPECT_EQ(Str(At(Find(redis, "Secret", "toolgate-redis-admin")->node, "stringData", "username")),
            "toolgate-admin");
}

TEST(DeployTest, ServersReadTheRedisPasswordFromAMountedSecretFile) {
  const std::vector<Doc> cluster = Build(SourcePath("deploy/overlays/cluster"));
  const auto servers = ToolgatedContainers(cluster);
  ASSERT_FALSE(servers.empty());
  for (const ToolgatedContainer& c : servers) {
    SCOPED_TRACE(c.where);
    const auto env = Env(c.container);
    ASSERT_TRUE(env.count("TOOLGATE_REDIS_PASSWORD_FILE"));
    ASSERT_TRUE(env.count("TOOLGATE_REDIS_USERNAME_FILE"));
    std::string password_secret, username_secret;
    ExpectSecretFile(cluster, c, env.at("TOOLGATE_REDIS_PASSWORD_FILE"), &password_secret);
    ExpectSecretFile(cluster, c, env.at("TOOLGATE_REDIS_USERNAME_FILE"), &username_secret);
    EXPECT_EQ(password_secret, "toolgate-redis-auth");
    EXPECT_EQ(username_secret, "toolgate-redis-auth");
    // The one the Redis pod gives the user "toolgate".
    EXPECT_EQ(Str(At(Find(cluster, "Secret", password_secret)->node, "stringData", "username")),
              "toolgate");
  }
}

TEST(DeployTest, NoSecretInAnyEnvironmentValueOrArgument) {
  const std::set<std::string> secrets = SecretValues();
  ASSERT_GE(secrets.size(), 2u);
  std::vector<std::pair<std::string, std::string>> values;  // (where, value)
  std::vector<Doc> docs = AllObjects();
  for (const std::string& f : PatchFiles()) {
    for (Doc& d : LoadDocs(f)) docs.push_back(std::move(d));
  }
  for (const Doc& d : docs) {
    const YAML::Node pod = PodSpec(d.node);
    if (!pod) continue;
    for (const YAML::Node& c : Containers(pod)) {
      const std::string where = Rel(d.file) + " " + Str(c["name"]);
      if (c["env"]) {
        for (const YAML::Node& e : c["env"]) {
          EXPECT_FALSE(At(e, "valueFrom", "secretKeyRef"))
              << where << ": " << Str(e["name"]) << " takes a Secret into the environment";
          values.push_back({where + " env " + Str(e["name"]), Str(e["value"])});
        }
      }
      EXPECT_FALSE(c["envFrom"]) << where << ": envFrom";
      for (const char* key : {"command", "args"}) {
        if (!c[key]) continue;
        for (const YAML::Node& a : c[key]) values.push_back({where + " " + key, Str(a)});
      }
    }
  }
  for (const std::string& compose : YamlFilesUnder(SourcePath("deploy/compose"))) {
    const YAML::Node file = YAML::LoadFile(compose);
    for (const auto& kv : file["services"]) {
      const std::string where = Rel(compose) + " " + kv.first.as<std::string>();
      if (kv.second["environment"]) {
        for (const auto& e : kv.second["environment"]) {
          values.push_back({where + " " + e.first.as<std::string>(), Str(e.second)});
        }
      }
      if (kv.second["command"]) {
        for (const YAML::Node& a : kv.second["command"]) values.push_back({where, Str(a)});
      }
    }
  }
  const std::regex inline_password(R"(rediss?(\+sentinel|\+cluster)?://[^/@\s]*:[^/@\s]+@)");
  for (const auto& [where, value] : values) {
    EXPECT_FALSE(std::regex_search(value, inline_password)) << where << ": " << value;
    for (const std::string& secret : secrets) {
      EXPECT_FALSE(absl::StrContains(value, secret)) << where << " holds a Secret's value";
    }
  }
}

TEST(DeployTest, NetworkPoliciesAdmitPodsOfNamedNamespacesOnly) {
  int policies = 0;
  const std::vector<Doc> all = AllObjects();
  for (const Doc& d : all) {
    if (Str(d.node["kind"]) != "NetworkPolicy") continue;
    ++policies;
    SCOPED_TRACE(Rel(d.file));
    ASSERT_TRUE(At(d.node, "spec", "ingress"));
    for (const YAML::Node& rule : d.node["spec"]["ingress"]) {
      ASSERT_TRUE(rule["from"]) << "a rule that admits every source";
      ASSERT_TRUE(rule["ports"]) << "a rule that admits every port";
      for (const YAML::Node& peer : rule["from"]) {
        EXPECT_FALSE(peer["ipBlock"]);
        const YAML::Node ns = At(peer, "namespaceSelector", "matchLabels");
        const YAML::Node pods = At(peer, "podSelector", "matchLabels");
        EXPECT_TRUE(ns && ns.IsMap() && ns.size() > 0) << "no namespace selector";
        EXPECT_TRUE(pods && pods.IsMap() && pods.size() > 0) << "no pod selector";
      }
    }
  }
  EXPECT_EQ(policies, 3);
  // Redis admits the decision servers only.
  const Doc* redis = Find(all, "NetworkPolicy", "toolgate-redis");
  ASSERT_NE(redis, nullptr);
  for (const YAML::Node& rule : redis->node["spec"]["ingress"]) {
    for (const YAML::Node& peer : rule["from"]) {
      EXPECT_EQ(Str(At(peer, "podSelector", "matchLabels", "app.kubernetes.io/component")),
                "decision-server");
    }
  }
}

TEST(DeployTest, TheSidecarListensOnLoopback) {
  const std::vector<Doc> sidecar = Build(SourcePath("deploy/sidecar"));
  const auto servers = ToolgatedContainers(sidecar);
  ASSERT_EQ(servers.size(), 1u);
  const auto env = Env(servers[0].container);
  EXPECT_EQ(env.at("TOOLGATE_LISTEN"), "127.0.0.1:50051");
  EXPECT_EQ(env.at("TOOLGATE_ADMIN_LISTEN"), "127.0.0.1:50052");
  // The gateway beside it calls the loopback address.
  bool gateway = false;
  for (const YAML::Node& c : Containers(servers[0].pod)) {
    if (IsToolgated(c)) continue;
    gateway = true;
    EXPECT_EQ(Env(c)["DECISION_SERVICE_TARGET"], "127.0.0.1:50051");
  }
  EXPECT_TRUE(gateway);
  // No NetworkPolicy rule admits toolgated's ports.
  for (const Doc& d : sidecar) {
    if (Str(d.node["kind"]) != "NetworkPolicy") continue;
    for (const YAML::Node& rule : d.node["spec"]["ingress"]) {
      for (const YAML::Node& p : rule["ports"]) {
        EXPECT_NE(p["port"].as<int>(), 50051);
        EXPECT_NE(p["port"].as<int>(), 50052);
      }
    }
  }
}

// deploy/envoy: Envoy's configuration asks toolgate (ext_authz, gRPC) before
// the MCP server, the way toolgate's ext_authz expects (the body sent, as
// bytes, never let through on failure), and every cluster and port it names
// is the one the pod's containers use. (No Envoy binary runs here: this is
// what can be checked without one.)
TEST(DeployTest, TheEnvoyConfigChecksEveryRequestWithToolgateFirst) {
  const std::vector<Doc> built = Build(SourcePath("deploy/envoy"));
  const YAML::Node envoy = YAML::LoadFile(SourcePath("deploy/envoy/envoy.yaml"));
  const Doc* generated = Find(built, "ConfigMap", "mcp-envoy");
  ASSERT_NE(generated, nullptr);
  EXPECT_TRUE(At(generated->node, "data", "envoy.yaml")) << "Envoy reads /etc/envoy/envoy.yaml";

  // Clusters: name -> port of their one endpoint.
  std::map<std::string, int> clusters;
  std::map<std::string, YAML::Node> cluster_nodes;
  for (const YAML::Node& c : At(envoy, "static_resources", "clusters")) {
    const YAML::Node lb = At(c, "load_assignment", "endpoints")[0]["lb_endpoints"];
    ASSERT_TRUE(lb && lb.size() == 1) << Str(c["name"]);
    const YAML::Node sa = At(lb[0], "endpoint", "address", "socket_address");
    EXPECT_EQ(Str(sa["address"]), "127.0.0.1") << Str(c["name"]) << ": in the same pod";
    clusters[Str(c["name"])] = sa["port_value"].as<int>();
    cluster_nodes[Str(c["name"])] = c;
    EXPECT_EQ(Str(At(c, "load_assignment", "cluster_name")), Str(c["name"]));
  }

  const YAML::Node listeners = At(envoy, "static_resources", "listeners");
  ASSERT_TRUE(listeners && listeners.size() == 1);
  const int listener_port = At(listeners[0], "address", "socket_address", "port_value").as<int>();
  const YAML::Node hcm = listeners[0]["filter_chains"][0]["filters"][0];
  EXPECT_EQ(Str(hcm["name"]), "envoy.filters.network.http_connection_manager");
  const YAML::Node filters = At(hcm, "typed_config", "http_filters");
  ASSERT_TRUE(filters && filters.size() >= 2);
  // ext_authz first, the router last: nothing is routed unchecked.
  EXPECT_EQ(Str(filters[0]["name"]), "envoy.filters.http.ext_authz");
  EXPECT_EQ(Str(filters[filters.size() - 1]["name"]), "envoy.filters.http.router");
  const YAML::Node authz = filters[0]["typed_config"];
  EXPECT_EQ(Str(authz["@type"]),
            "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz");
  EXPECT_EQ(Str(authz["transport_api_version"]), "V3");
  EXPECT_EQ(Str(authz["failure_mode_allow"]), "false");
  const std::string authz_cluster = Str(At(authz, "grpc_service", "envoy_grpc", "cluster_name"));
  ASSERT_TRUE(clusters.count(authz_cluster)) << "ext_authz names cluster " << authz_cluster;
  const double timeout = Seconds(Str(At(authz, "grpc_service", "timeout")));
  EXPECT_GT(timeout, 0);
  EXPECT_LE(timeout, 1.0);
  // gRPC needs HTTP/2 to toolgate.
  EXPECT_TRUE(At(cluster_nodes[authz_cluster], "typed_extension_protocol_options",
                 "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", "explicit_http_config",
                 "http2_protocol_options"));
  // The body is what toolgate decides from: sent, as bytes, within what
  // toolgated reads (--max-args-bytes, 64 KiB by default, plus 16 KiB), and
  // a body cut short is marked rather than refused by Envoy.
  const YAML::Node body = authz["with_request_body"];
  ASSERT_TRUE(body) << "ext_authz must send the body (with_request_body)";
  EXPECT_GT(body["max_request_bytes"].as<int>(), 0);
  EXPECT_LE(body["max_request_bytes"].as<int>(), 64 * 1024 + 16 * 1024);
  EXPECT_EQ(Str(body["allow_partial_message"]), "true");
  EXPECT_EQ(Str(body["pack_as_bytes"]), "true");

  // Routes: every cluster exists; every route to the MCP server names its
  // toolgate `server` (context_extensions) and never turns the check off.
  int routed = 0;
  for (const YAML::Node& vh : At(hcm, "typed_config", "route_config", "virtual_hosts")) {
    for (const YAML::Node& r : vh["routes"]) {
      if (!At(r, "route", "cluster")) {
        EXPECT_TRUE(r["direct_response"]) << "a route that goes nowhere";
        continue;
      }
      ++routed;
      const std::string cluster = Str(At(r, "route", "cluster"));
      EXPECT_TRUE(clusters.count(cluster)) << "a route to cluster " << cluster;
      EXPECT_NE(cluster, authz_cluster);
      const YAML::Node per = At(r, "typed_per_filter_config", "envoy.filters.http.ext_authz");
      ASSERT_TRUE(per) << "route " << Str(At(r, "match", "prefix")) << " has no ext_authz settings";
      EXPECT_FALSE(per["disabled"]) << "ext_authz turned off on a route";
      EXPECT_FALSE(Str(At(per, "check_settings", "context_extensions", "server")).empty());
    }
  }
  EXPECT_GE(routed, 1);

  // The pod: toolgated listens where the toolgate cluster points, Envoy on
  // the listener's port (the Service's target), the MCP server where its
  // cluster points, and Envoy reads the generated ConfigMap.
  const auto servers = ToolgatedContainers(built);
  ASSERT_EQ(servers.size(), 1u);
  const auto env = Env(servers[0].container);
  EXPECT_EQ(env.at("TOOLGATE_LISTEN"), absl::StrCat("127.0.0.1:", clusters[authz_cluster]));
  EXPECT_EQ(env.count("TOOLGATE_EXT_AUTHZ"), 0u) << "ext_authz must stay on";
  const YAML::Node* envoy_container = nullptr;
  std::vector<YAML::Node> containers = Containers(servers[0].pod);
  for (const YAML::Node& c : containers) {
    if (absl::StrContains(Str(c["image"]), "envoyproxy/envoy")) envoy_container = &c;
  }
  ASSERT_NE(envoy_container, nullptr);
  EXPECT_EQ(NamedPort(*envoy_container, "http"), listener_port);
  EXPECT_THAT(Words(absl::StrJoin((*envoy_container)["args"].as<std::vector<std::string>>(), " ")),
              Contains("/etc/envoy/envoy.yaml"));
  bool mounted = false;
  for (const YAML::Node& m : (*envoy_container)["volumeMounts"]) {
    if (Str(m["mountPath"]) != "/etc/envoy") continue;
    for (const YAML::Node& v : servers[0].pod["volumes"]) {
      if (Str(v["name"]) == Str(m["name"])) {
        mounted = Str(At(v, "configMap", "name")) == "mcp-envoy";
      }
    }
  }
  EXPECT_TRUE(mounted) << "Envoy does not mount the ConfigMap mcp-envoy at /etc/envoy";
  bool mcp_port = false;
  for (const YAML::Node& c : containers) {
    if (Str(c["name"]) == "mcp-server") {
      mcp_port = Env(c)["PORT"] == absl::StrCat(clusters["mcp_server"]);
    }
  }
  EXPECT_TRUE(mcp_port) << "the MCP server does not listen where cluster mcp_server points";
  const Doc* service = Find(built, "Service", "mcp-server");
  ASSERT_NE(service, nullptr);
  const YAML::Node sp = At(service->node, "spec", "ports")[0];
  EXPECT_EQ(ResolvePort(*envoy_container, sp["targetPort"]), listener_port)
      << "the Service does not reach Envoy";
  EXPECT_TRUE(LabelsMatch(At(service->node, "spec", "selector"), PodLabels(servers[0].obj)));
}

TEST(DeployTest, TheTlsOverlayPassesTheTlsFlagsFilesOfTheMountedSecret) {
  const std::vector<Doc> tls = Build(SourcePath("deploy/overlays/tls"));
  const auto servers = ToolgatedContainers(tls);
  ASSERT_EQ(servers.size(), 1u);
  const ToolgatedContainer& c = servers[0];
  const auto env = Env(c.container);
  std::map<std::string, std::string> expected_keys = {{"TOOLGATE_TLS_CERT", "tls.crt"},
                                                      {"TOOLGATE_TLS_KEY", "tls.key"},
                                                      {"TOOLGATE_TLS_CLIENT_CA", "ca.crt"}};
  std::set<std::string> secrets;
  for (const auto& [var, key] : expected_keys) {
    SCOPED_TRACE(var);
    ASSERT_TRUE(env.count(var)) << "the TLS overlay does not set " << var;
    EXPECT_EQ(fs::path(env.at(var)).filename().string(), key);
    std::string secret;
    ExpectSecretFile(tls, c, env.at(var), &secret);
    secrets.insert(secret);
  }
  ASSERT_EQ(secrets.size(), 1u) << "one Secret holds the certificate, its key and the CA";
  // cert-manager writes it.
  bool certificate = false;
  for (const Doc& d : tls) {
    certificate |= Str(d.node["kind"]) == "Certificate" &&
                   Str(At(d.node, "spec", "secretName")) == *secrets.begin();
  }
  EXPECT_TRUE(certificate) << "no Certificate writes Secret " << *secrets.begin();
  // The rest of the cluster shape is unchanged (Redis credentials too)...
  EXPECT_TRUE(env.count("TOOLGATE_REDIS_PASSWORD_FILE"));
  EXPECT_EQ(env.at("TOOLGATE_LISTEN"), "0.0.0.0:50051");
  // ...but the kubelet's gRPC probes speak plaintext: TCP probes for
  // startup and liveness, and readiness asks the health service over mTLS
  // with the pod's own certificate (files of the same Secret).
  for (const char* probe : {"startupProbe", "readinessProbe", "livenessProbe"}) {
    EXPECT_FALSE(At(c.container, probe, "grpc")) << probe;
  }
  for (const char* probe : {"startupProbe", "livenessProbe"}) {
    SCOPED_TRACE(probe);
    EXPECT_EQ(ResolvePort(c.container, At(c.container, probe, "tcpSocket", "port")), 50051);
  }
  const YAML::Node ready = At(c.container, "readinessProbe", "exec", "command");
  ASSERT_TRUE(ready) << "readiness must ask the health service";
  const auto argv = ready.as<std::vector<std::string>>();
  ASSERT_GE(argv.size(), 2u);
  EXPECT_EQ(argv[1], "health");
  EXPECT_THAT(argv, Contains("127.0.0.1:50051"));
  for (const char* flag : {"--tls-ca", "--tls-cert", "--tls-key"}) {
    auto at = std::find(argv.begin(), argv.end(), flag);
    ASSERT_NE(at, argv.end()) << flag;
    ASSERT_NE(at + 1, argv.end()) << flag;
    EXPECT_TRUE(absl::StartsWith(*(at + 1), "/run/secrets/toolgate-tls/")) << *(at + 1);
  }
  bool client_auth = false;
  for (const Doc& d : tls) {
    if (Str(d.node["kind"]) != "Certificate") continue;
    for (const YAML::Node& u : d.node["spec"]["usages"]) client_auth |= Str(u) == "client auth";
  }
  EXPECT_TRUE(client_auth) << "the probe presents the pod's certificate as a client";
  for (const char* name : {"toolgate", "toolgate-headless"}) {
    const Doc* svc = Find(tls, "Service", name);
    ASSERT_NE(svc, nullptr);
    for (const YAML::Node& p : svc->node["spec"]["ports"]) {
      EXPECT_NE(Str(p["appProtocol"]), "kubernetes.io/h2c") << name << " still says cleartext";
    }
  }
}

TEST(DeployTest, TheComposeTlsVariantUsesTheCertificatesItsScriptWrites) {
  const YAML::Node base = YAML::LoadFile(SourcePath("deploy/compose/compose.yaml"));
  const YAML::Node tls = YAML::LoadFile(SourcePath("deploy/compose/compose.tls.yaml"));
  TempDir dir;
  CommandResult gen =
      RunCommand({"/bin/sh", SourcePath("deploy/compose/gen-dev-certs.sh"), dir.path() + "/certs"});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  int servers = 0;
  for (const auto& kv : base["services"]) {
    const std::string name = kv.first.as<std::string>();
    if (!absl::StrContains(Str(kv.second["image"]), "toolgated")) continue;
    ++servers;
    SCOPED_TRACE(name);
    const YAML::Node over = tls["services"][name];
    ASSERT_TRUE(over) << "compose.tls.yaml does not cover " << name;
    std::map<std::string, std::string> mounts;  // container dir -> host dir
    for (const YAML::Node& v : over["volumes"]) {
      std::vector<std::string> parts = absl::StrSplit(Str(v), ':');
      ASSERT_GE(parts.size(), 2u);
      mounts[parts[1]] = parts[0];
      if (parts.size() > 2) {
        EXPECT_EQ(parts[2], "ro");
      }
    }
    for (const auto& [var, key] :
         std::map<std::string, std::string>{{"TOOLGATE_TLS_CERT", "tls.crt"},
                                            {"TOOLGATE_TLS_KEY", "tls.key"},
                                            {"TOOLGATE_TLS_CLIENT_CA", "ca.crt"}}) {
      const std::string path = Str(At(over, "environment", var));
      ASSERT_FALSE(path.empty()) << var;
      const fs::path p(path);
      EXPECT_EQ(p.filename().string(), key) << var;
      ASSERT_TRUE(mounts.count(p.parent_path().string())) << var << ": nothing mounted there";
      const std::string host = mounts[p.parent_path().string()];
      ASSERT_TRUE(absl::StartsWith(host, "./certs/")) << host;
      // The script writes that file.
      const std::string written = dir.path() + "/certs/" + host.substr(8) + "/" + key;
      EXPECT_TRUE(fs::is_regular_file(written)) << written;
    }
  }
  EXPECT_EQ(servers, 3);
  // The certificates verify against the CA; the server's names are the
  // compose services' and localhost.
  const std::string certs = dir.path() + "/certs";
  for (const std::string who : {"server", "client"}) {
    CommandResult v = RunCommand({"/usr/bin/openssl", "verify", "-CAfile",
                                  certs + "/" + who + "/ca.crt", certs + "/" + who + "/tls.crt"});
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  }
  CommandResult san = RunCommand({"/usr/bin/openssl", "x509", "-noout", "-ext", "subjectAltName",
                                  "-in", certs + "/server/tls.crt"});
  for (const char* name : {"DNS:toolgated-1", "DNS:toolgated-2", "DNS:toolgated-3", "DNS:localhost",
                           "IP Address:127.0.0.1"}) {
    EXPECT_THAT(san.out, HasSubstr(name));
  }
  CommandResult client = RunCommand({"/usr/bin/openssl", "x509", "-noout", "-ext", "subjectAltName",
                                     "-in", certs + "/client/tls.crt"});
  EXPECT_THAT(
      client.out,
      HasSubstr(Str(At(tls, "services", "toolgated-1", "environment", "TOOLGATE_ALLOW_PEER"))));
  // The CA's key stays out of the directories the containers mount.
  EXPECT_FALSE(fs::exists(certs + "/server/ca.key"));
  EXPECT_EQ(fs::status(certs + "/ca.key").permissions() & fs::perms::others_read, fs::perms::none);
}

// ---- compose variants: Sentinel and Cluster ---------------------------------------

// `over` merged over `base` the way Docker Compose merges its -f files: maps
// key by key, `ports` and `volumes` appended, anything else replaced.
YAML::Node MergeCompose(const YAML::Node& base, const YAML::Node& over) {
  if (!base || !base.IsMap() || !over.IsMap()) return YAML::Clone(over);
  YAML::Node out = YAML::Clone(base);
  for (const auto& kv : over) {
    const std::string key = kv.first.as<std::string>();
    if ((key == "ports" || key == "volumes") && out[key] && out[key].IsSequence() &&
        kv.second.IsSequence()) {
      for (const YAML::Node& v : kv.second) out[key].push_back(YAML::Clone(v));
    } else {
      out[key] = MergeCompose(out[key], kv.second);
    }
  }
  return out;
}

YAML::Node ComposeWith(const std::string& variant) {
  return MergeCompose(YAML::LoadFile(SourcePath("deploy/compose/compose.yaml")),
                      YAML::LoadFile(SourcePath("deploy/compose/" + variant)));
}

// A service's command as one string (words joined by spaces).
std::string CommandText(const YAML::Node& service) {
  std::vector<std::string> words;
  if (service["command"] && service["command"].IsSequence()) {
    for (const YAML::Node& w : service["command"]) words.push_back(Str(w));
  } else {
    words.push_back(Str(service["command"]));
  }
  return absl::StrJoin(words, " ");
}

bool IsSentinel(const YAML::Node& service) {
  return absl::StrContains(CommandText(service), "--sentinel");
}

// The port a Redis service listens on: a sentinel's `port N` line (26379
// when absent), a server's --port (6379 when absent).
int RedisPort(const YAML::Node& service) {
  const std::string text = CommandText(service);
  std::smatch m;
  const bool sentinel = IsSentinel(service);
  if (std::regex_search(text, m, std::regex(sentinel ? R"(\bport (\d+))" : R"(--port (\d+))"))) {
    return std::stoi(m[1]);
  }
  return sentinel ? 26379 : 6379;
}

// The value after `flag` in a service's command ("" when absent).
std::string CommandArg(const YAML::Node& service, const std::string& flag, int which = 1) {
  if (!service["command"] || !service["command"].IsSequence()) return "";
  const YAML::Node c = service["command"];
  for (size_t i = 0; i + which < c.size(); ++i) {
    if (Str(c[i]) == flag) return Str(c[i + which]);
  }
  return "";
}

// The HOST:PORT list of a redis+sentinel:// or redis+cluster:// URL, and
// what follows it (the path).
std::pair<std::vector<std::string>, std::string> UrlHosts(const std::string& url,
                                                          const std::string& scheme) {
  if (!absl::StartsWith(url, scheme)) return {};
  const std::string rest = url.substr(scheme.size());
  const size_t slash = rest.find('/');
  std::vector<std::string> hosts = absl::StrSplit(rest.substr(0, slash), ',');
  return {hosts, slash == std::string::npos ? "" : rest.substr(slash)};
}

// What every compose variant keeps: three servers, still non-root and
// read-only, published on loopback only; Redis published nowhere, from the
// image compose.yaml uses; every dependency exists, and one waited for as
// healthy has a health check.
void ExpectComposeVariantBasics(const YAML::Node& merged) {
  const std::string redis_image = Str(At(merged, "services", "redis", "image"));
  ASSERT_FALSE(redis_image.empty());
  int servers = 0;
  for (const auto& kv : merged["services"]) {
    const std::string name = kv.first.as<std::string>();
    const YAML::Node& svc = kv.second;
    SCOPED_TRACE(name);
    if (absl::StartsWith(name, "toolgated")) {
      ++servers;
      EXPECT_TRUE(absl::StartsWith(Str(svc["user"]), "10001"));
      EXPECT_EQ(Str(svc["read_only"]), "true");
      for (const YAML::Node& p : svc["ports"]) EXPECT_TRUE(absl::StartsWith(Str(p), "127.0.0.1:"));
    } else {
      EXPECT_EQ(Str(svc["image"]), redis_image) << "one Redis image everywhere";
      EXPECT_FALSE(svc["ports"]) << "Redis is published on the host";
    }
    if (!svc["depends_on"]) continue;
    for (const auto& dep : svc["depends_on"]) {
      const std::string target = dep.first.as<std::string>();
      ASSERT_TRUE(merged["services"][target]) << "depends on a missing service " << target;
      if (Str(dep.second["condition"]) == "service_healthy") {
        EXPECT_TRUE(merged["services"][target]["healthcheck"])
            << "waits for " << target << " to be healthy, which has no healthcheck";
      }
    }
  }
  EXPECT_EQ(servers, 3);
}

TEST(DeployTest, TheComposeSentinelVariantPointsTheServersAtItsSentinels) {
  const YAML::Node merged = ComposeWith("compose.sentinel.yaml");
  ExpectComposeVariantBasics(merged);
  const YAML::Node services = merged["services"];

  // The sentinels agree on what they monitor: the master service and port,
  // with a majority quorum.
  std::map<std::string, int> sentinels;  // service -> port
  std::string master_name, master_host;
  int master_port = 0, quorum = 0;
  for (const auto& kv : services) {
    if (!IsSentinel(kv.second)) continue;
    const std::string name = kv.first.as<std::string>();
    SCOPED_TRACE(name);
    sentinels[name] = RedisPort(kv.second);
    const std::string text = CommandText(kv.second);
    std::smatch m;
    ASSERT_TRUE(
        std::regex_search(text, m, std::regex(R"(sentinel monitor (\S+) (\S+) (\d+) (\d+))")));
    if (master_name.empty()) {
      master_name = m[1], master_host = m[2], master_port = std::stoi(m[3]),
      quorum = std::stoi(m[4]);
    }
    EXPECT_EQ(m[1], master_name);
    EXPECT_EQ(m[2], master_host);
    EXPECT_EQ(std::stoi(m[3]), master_port);
    // A service name, not an address: the sentinels must resolve it, and
    // hand out names too.
    EXPECT_THAT(text, HasSubstr("sentinel resolve-hostnames yes"));
    EXPECT_THAT(text, HasSubstr("sentinel announce-hostnames yes"));
    // Each announces its own service name.
    if (absl::StrContains(text, "announce-ip $$SENTINEL_NAME")) {
      EXPECT_EQ(Str(At(kv.second, "environment", "SENTINEL_NAME")), name);
    } else {
      EXPECT_THAT(text, HasSubstr("sentinel announce-ip " + name));
    }
    EXPECT_TRUE(kv.second["healthcheck"]);
  }
  ASSERT_GE(sentinels.size(), 3u);
  EXPECT_EQ(sentinels.size() % 2, 1u) << "an even number of sentinels can split evenly";
  EXPECT_GT(quorum * 2, static_cast<int>(sentinels.size())) << "quorum " << quorum;
  EXPECT_LE(quorum, static_cast<int>(sentinels.size()));

  // The master and its replicas: each announces its service name; the
  // replicas follow the monitored master.
  ASSERT_TRUE(services[master_host]) << "the sentinels monitor " << master_host << ", no service";
  EXPECT_EQ(RedisPort(services[master_host]), master_port);
  EXPECT_EQ(CommandArg(services[master_host], "--replicaof"), "") << "the master is a replica";
  int replicas = 0;
  for (const auto& kv : services) {
    const std::string name = kv.first.as<std::string>();
    if (absl::StartsWith(name, "toolgated") || IsSentinel(kv.second)) continue;
    SCOPED_TRACE(name);
    EXPECT_EQ(CommandArg(kv.second, "--replica-announce-ip"), name);
    if (CommandArg(kv.second, "--replicaof").empty()) {
      EXPECT_EQ(name, master_host) << "a second master";
      continue;
    }
    ++replicas;
    EXPECT_EQ(CommandArg(kv.second, "--replicaof"), master_host);
    EXPECT_EQ(CommandArg(kv.second, "--replicaof", 2), std::to_string(master_port));
  }
  EXPECT_GE(replicas, 1);

  // Every server asks the sentinels for that master, once they are healthy.
  for (const auto& kv : services) {
    const std::string name = kv.first.as<std::string>();
    if (!absl::StartsWith(name, "toolgated")) continue;
    SCOPED_TRACE(name);
    const std::string url = Str(At(kv.second, "environment", "TOOLGATE_REDIS"));
    const auto [hosts, path] = UrlHosts(url, "redis+sentinel://");
    ASSERT_FALSE(hosts.empty()) << url;
    EXPECT_TRUE(path == "/" + master_name || absl::StartsWith(path, "/" + master_name + "/"))
        << url;
    std::set<std::string> named;
    for (const std::string& h : hosts) {
      const std::string host = h.substr(0, h.rfind(':'));
      ASSERT_TRUE(sentinels.count(host)) << url << ": " << host << " is not a sentinel";
      EXPECT_EQ(PortOf(h), sentinels[host]) << url;
      named.insert(host);
    }
    EXPECT_EQ(named.size(), sentinels.size()) << url << " leaves a sentinel out";
    for (const auto& [sentinel, port] : sentinels) {
      EXPECT_EQ(Str(At(kv.second, "depends_on", sentinel, "condition")), "service_healthy")
          << "does not wait for " << sentinel;
    }
  }
}

TEST(DeployTest, TheComposeClusterVariantCreatesTheClusterBeforeTheServersStart) {
  const YAML::Node merged = ComposeWith("compose.cluster.yaml");
  ExpectComposeVariantBasics(merged);
  const YAML::Node services = merged["services"];

  std::map<std::string, int> nodes;  // service -> port
  std::string init;
  for (const auto& kv : services) {
    const std::string name = kv.first.as<std::string>();
    if (CommandArg(kv.second, "--cluster-enabled") == "yes") nodes[name] = RedisPort(kv.second);
    if (absl::StrContains(CommandText(kv.second), "--cluster create")) init = name;
  }
  // Three masters and a replica of each.
  ASSERT_EQ(nodes.size(), 6u);
  ASSERT_FALSE(init.empty()) << "no service runs redis-cli --cluster create";
  EXPECT_TRUE(nodes.count("redis")) << "compose.yaml's Redis is not a cluster node";

  // The one-shot service creates the cluster from every node, each at its
  // port, after all are healthy.
  const YAML::Node init_svc = services[init];
  const std::string script = CommandText(init_svc);
  EXPECT_THAT(script, HasSubstr("--cluster-replicas 1"));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(script, m, std::regex(R"(for n in ([^;]+);)"))) << script;
  std::set<std::string> listed = absl::StrSplit(std::string(m[1]), ' ', absl::SkipEmpty());
  std::set<std::string> expected;
  for (const auto& [name, port] : nodes) {
    expected.insert(name);
    EXPECT_EQ(port, 6379) << name << ": the create command adds :6379 to every node";
    EXPECT_EQ(Str(At(init_svc, "depends_on", name, "condition")), "service_healthy") << name;
  }
  EXPECT_EQ(listed, expected);
  EXPECT_THAT(script, HasSubstr("cluster_state:ok")) << "returns before the cluster is usable";
  EXPECT_EQ(Str(init_svc["restart"]), "no");

  // Every server seeds its slot map from cluster nodes, once the cluster
  // is created.
  for (const auto& kv : services) {
    const std::string name = kv.first.as<std::string>();
    if (!absl::StartsWith(name, "toolgated")) continue;
    SCOPED_TRACE(name);
    const std::string url = Str(At(kv.second, "environment", "TOOLGATE_REDIS"));
    const auto [hosts, path] = UrlHosts(url, "redis+cluster://");
    ASSERT_FALSE(hosts.empty()) << url;
    EXPECT_EQ(path, "") << url << ": a cluster has no databases";
    for (const std::string& h : hosts) {
      const std::string host = h.substr(0, h.rfind(':'));
      ASSERT_TRUE(nodes.count(host)) << url << ": " << host << " is not a cluster node";
      EXPECT_EQ(PortOf(h), nodes[host]) << url;
    }
    EXPECT_EQ(Str(At(kv.second, "depends_on", init, "condition")),
              "service_completed_successfully");
  }
}

// ---- the local topology, run for real ------------------------------------------

std::map<std::string, std::string> ReadEnvFile(const std::string& path) {
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(ReadFileOrEmpty(path), '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t eq = line.find('=');
    if (eq != absl::string_view::npos) {
      out[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
    }
  }
  return out;
}

// The servers share their counters: the example policy allows 10 calls a
// minute per grant, and 12 calls spread over the three servers get exactly
// 10 ALLOW.
void ExpectSharedCounters(const std::vector<std::string>& servers) {
  ASSERT_EQ(servers.size(), 3u);
  int allow = 0, limited = 0;
  for (int i = 0; i < 12; ++i) {
    auto client = toolgate::Client::Connect(servers[i % 3]);
    toolgate::v1::CheckRequest req;
    req.set_tool("wait_for_background_task");
    req.set_grant("topology-agent");
    auto r = client->Check(req, absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << servers[i % 3] << ": " << r.status();
    allow += r->decision() == toolgate::v1::DECISION_ALLOW;
    limited += r->decision() == toolgate::v1::DECISION_RATE_LIMITED;
  }
  EXPECT_EQ(allow, 10);
  EXPECT_EQ(limited, 2);
}

// "NAME PID" lines of a local topology's pid file.
std::map<std::string, pid_t> ReadPids(const std::string& file) {
  std::map<std::string, pid_t> pids;
  for (absl::string_view line : absl::StrSplit(ReadFileOrEmpty(file), '\n', absl::SkipEmpty())) {
    std::vector<std::string> parts = absl::StrSplit(line, ' ');
    EXPECT_EQ(parts.size(), 2u) << line;
    if (parts.size() == 2) pids[parts[0]] = std::stoi(parts[1]);
  }
  return pids;
}

// Gone, or a zombie of an exited process (the script's children are
// reparented, so look at the state, not only at kill(0)).
bool Exited(pid_t pid) {
  const std::string stat = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/stat"));
  return stat.empty() || absl::StrContains(stat, ") Z ");
}

TEST(DeployTest, LocalTopologyRunsThreeServersSharingOneRedis) {
  TempDir state;
  const std::string script = SourcePath("scripts/local-topology.sh");
  const std::string build_dir = fs::path(ToolgatedBin()).parent_path().string();
  // Every server binds port 0 and the script reads the addresses they log;
  // Redis gets a port outside the ephemeral range. The Redis deadline is not
  // under test: 5 s is 10x more than any call takes on a busy machine (the
  // default, 25 ms, is not), so every check is decided by Redis.
  CommandResult start = RunCommand({"/bin/bash", script, "start", "--build-dir", build_dir,
                                    "--state-dir", state.path(), "--", "--redis-timeout", "5s"},
                                   {}, absl::Seconds(60));
  // Whatever happens below, stop what was started.
  struct Stopper {
    std::vector<std::string> argv;
    ~Stopper() { RunCommand(argv, {}, absl::Seconds(30)); }
  } stopper{{"/bin/bash", script, "stop", "--state-dir", state.path()}};
  ASSERT_EQ(start.exit_code, 0) << start.out << start.err;

  auto env = ReadEnvFile(state.path() + "/topology.env");
  std::vector<std::string> servers = absl::StrSplit(env["TOPOLOGY_SERVERS"], ',', absl::SkipEmpty());
  ASSERT_EQ(servers.size(), 3u) << ReadFileOrEmpty(state.path() + "/topology.env");
  EXPECT_EQ(env["TOPOLOGY_GRPC_TARGET"], "ipv4:" + env["TOPOLOGY_SERVERS"]);
  EXPECT_TRUE(absl::StartsWith(env["TOPOLOGY_REDIS_URL"], "redis://127.0.0.1:"));
  for (const std::string& s : servers) EXPECT_TRUE(absl::StartsWith(s, "127.0.0.1:")) << s;
  if (ToolgatedHelp().flags.count("metrics-listen")) {
    EXPECT_EQ(std::vector<std::string>(absl::StrSplit(env["TOPOLOGY_METRICS"], ',')).size(), 3u);
  }
  const std::map<std::string, pid_t> pids = ReadPids(state.path() + "/pids");
  EXPECT_EQ(pids.size(), 4u);
  EXPECT_TRUE(pids.count("redis"));

  ExpectSharedCounters(servers);

  CommandResult stop = RunCommand({"/bin/bash", script, "stop", "--state-dir", state.path()}, {},
                                  absl::Seconds(30));
  EXPECT_EQ(stop.exit_code, 0) << stop.out << stop.err;
  for (const auto& [name, pid] : pids) EXPECT_TRUE(Exited(pid)) << name << " still runs";
  // toolgated exited cleanly on SIGTERM.
  for (int n = 1; n <= 3; ++n) {
    EXPECT_THAT(ReadFileOrEmpty(absl::StrCat(state.path(), "/toolgated-", n, ".log")),
                ::testing::HasSubstr("stopped"));
  }
  EXPECT_FALSE(fs::exists(state.path() + "/pids"));
}

// --redis-mode sentinel and cluster: the Redis comes up as the printed URL
// says, checked with redis-cli against the processes the script names, and
// stops with the rest. Three servers share it once toolgated takes the URL
// (its --help names the scheme); until then the Redis is started alone
// (--servers 0).
class LocalTopologyModeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LocalTopologyModeTest, StartsTheRedisItsUrlNames) {
  const std::string mode = GetParam();
  const std::string scheme = "redis+" + mode + "://";
  const bool servers_take_it = absl::StrContains(ToolgatedHelp().text, "redis+" + mode);
  TempDir state;
  const std::string script = SourcePath("scripts/local-topology.sh");
  const std::string build_dir = fs::path(ToolgatedBin()).parent_path().string();
  CommandResult start = RunCommand({"/bin/bash", script, "start", "--build-dir", build_dir,
                                    "--state-dir", state.path(), "--redis-mode", mode, "--servers",
                                    servers_take_it ? "3" : "0", "--", "--redis-timeout", "5s"},
                                   {}, absl::Seconds(180));
  struct Stopper {
    std::vector<std::string> argv;
    ~Stopper() { RunCommand(argv, {}, absl::Seconds(60)); }
  } stopper{{"/bin/bash", script, "stop", "--state-dir", state.path()}};
  ASSERT_EQ(start.exit_code, 0) << start.out << start.err;

  auto env = ReadEnvFile(state.path() + "/topology.env");
  const std::string url = env["TOPOLOGY_REDIS_URL"];
  EXPECT_THAT(start.out, HasSubstr(url));
  EXPECT_EQ(env["TOPOLOGY_REDIS_MODE"], mode);
  const auto [hosts, path] = UrlHosts(url, scheme);
  const std::string cli = env["REDIS_TOPOLOGY_CLI"];
  ASSERT_TRUE(absl::StartsWith(cli, "/")) << cli;
  const auto redis = [&](const std::string& host_port, std::vector<std::string> args) {
    std::vector<std::string> argv = {cli, "-h", host_port.substr(0, host_port.rfind(':')), "-p",
                                     std::to_string(PortOf(host_port))};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, {}, absl::Seconds(10));
  };
  const auto field = [](const std::string& info, const std::string& name) {
    std::smatch m;
    return std::regex_search(info, m, std::regex("(^|\n)" + name + ":([^\r\n]*)")) ? m[2].str()
                                                                                   : std::string();
  };
  const std::map<std::string, pid_t> pids = ReadPids(state.path() + "/pids");
  size_t redis_processes = 0;

  if (mode == "sentinel") {
    redis_processes = 5;
    // Three sentinels on loopback, named in the URL, that agree on the
    // master; the replica follows it, in sync.
    ASSERT_EQ(hosts.size(), 3u) << url;
    EXPECT_EQ(absl::StrJoin(hosts, ","), env["REDIS_TOPOLOGY_SENTINELS"]);
    EXPECT_EQ(path, "/toolgate") << url;
    const std::string master = env["REDIS_TOPOLOGY_MASTER"];
    for (const std::string& h : hosts) {
      EXPECT_TRUE(absl::StartsWith(h, "127.0.0.1:")) << h;
      CommandResult r = redis(h, {"SENTINEL", "get-master-addr-by-name", "toolgate"});
      EXPECT_EQ(r.out, "127.0.0.1\n" + std::to_string(PortOf(master)) + "\n") << h << r.err;
      r = redis(h, {"SENTINEL", "ckquorum", "toolgate"});
      EXPECT_THAT(r.out, HasSubstr("OK")) << h;
    }
    const std::string info = redis(env["REDIS_TOPOLOGY_REPLICAS"], {"INFO", "replication"}).out;
    EXPECT_EQ(field(info, "role"), "slave") << info;
    EXPECT_EQ(field(info, "master_port"), std::to_string(PortOf(master))) << info;
    EXPECT_EQ(field(info, "master_link_status"), "up") << info;
    for (const char* name : {"redis-master", "redis-replica", "redis-sentinel-1",
                             "redis-sentinel-2", "redis-sentinel-3"}) {
      EXPECT_TRUE(pids.count(name)) << name;
    }
  } else {
    redis_processes = 6;
    // Six nodes, named in the URL, each in a cluster that covers every
    // slot with three masters; a key written through one node is read
    // through another.
    ASSERT_EQ(hosts.size(), 6u) << url;
    EXPECT_EQ(path, "") << url;
    EXPECT_EQ(absl::StrJoin(hosts, ","), env["REDIS_TOPOLOGY_NODES"]);
    EXPECT_EQ(std::vector<std::string>(absl::StrSplit(env["REDIS_TOPOLOGY_MASTERS"], ',')).size(),
              3u);
    for (const std::string& h : hosts) {
      EXPECT_TRUE(absl::StartsWith(h, "127.0.0.1:")) << h;
      const std::string info = redis(h, {"CLUSTER", "INFO"}).out;
      EXPECT_EQ(field(info, "cluster_state"), "ok") << h << ": " << info;
      EXPECT_EQ(field(info, "cluster_slots_assigned"), "16384") << h;
      EXPECT_EQ(field(info, "cluster_known_nodes"), "6") << h;
      EXPECT_EQ(field(info, "cluster_size"), "3") << h;
    }
    EXPECT_EQ(redis(hosts[0], {"-c", "SET", "toolgate:topology-test", "yes"}).out, "OK\n");
    EXPECT_EQ(redis(hosts[5], {"-c", "GET", "toolgate:topology-test"}).out, "yes\n");
    for (int n = 1; n <= 6; ++n) EXPECT_TRUE(pids.count(absl::StrCat("redis-node-", n))) << n;
  }

  if (servers_take_it) {
    EXPECT_EQ(pids.size(), redis_processes + 3);
    ExpectSharedCounters(
        std::vector<std::string>(absl::StrSplit(env["TOPOLOGY_SERVERS"], ',', absl::SkipEmpty())));
  } else {
    EXPECT_EQ(pids.size(), redis_processes);
    EXPECT_EQ(env["TOPOLOGY_SERVERS"], "");
  }

  CommandResult stop =
      RunCommand({"/bin/bash", script, "stop", "--state-dir", state.path()}, {}, absl::Seconds(60));
  EXPECT_EQ(stop.exit_code, 0) << stop.out << stop.err;
  for (const auto& [name, pid] : pids) EXPECT_TRUE(Exited(pid)) << name << " still runs";
  EXPECT_FALSE(fs::exists(state.path() + "/pids"));
  EXPECT_FALSE(fs::exists(state.path() + "/redis/redis-topology.pids"));
}

INSTANTIATE_TEST_SUITE_P(Modes, LocalTopologyModeTest, ::testing::Values("sentinel", "cluster"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace toolgate_test
