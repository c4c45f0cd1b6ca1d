#include "server/service/ext_authz_mapping.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/base/json.h"
#include "server/base/json_parse.h"

namespace toolgate {
namespace {

namespace auth = envoy::service::auth::v3;
using ::testing::HasSubstr;

auth::CheckRequest Post(std::string body) {
  auth::CheckRequest r;
  auto* http = r.mutable_attributes()->mutable_request()->mutable_http();
  http->set_method("POST");
  http->set_host("mcp.example:8080");
  (*http->mutable_headers())["x-toolgate-grant"] = "agent-1";
  (*http->mutable_headers())["content-length"] = std::to_string(body.size());
  http->set_raw_body(std::move(body));
  return r;
}

std::string Call(absl::string_view id, absl::string_view tool, absl::string_view args) {
  return absl::StrCat("{\"jsonrpc\":\"2.0\",\"id\":", id,
                      ",\"method\":\"tools/call\",\"params\":{\"name\":\"", tool,
                      "\",\"arguments\":", args, "}}");
}

struct Read {
  bool ok;
  McpHttpRequest request;
  McpHttpError error;
};

Read ReadIt(const auth::CheckRequest& r, ExtAuthzOptions options = {}) {
  Read out;
  out.ok = ReadMcpHttpRequest(r, options, ArgsLimits{}, &out.request, &out.error);
  return out;
}

google::protobuf::Value Body(const auth::CheckResponse& r) {
  auto v = ParseJsonValue(r.denied_response().body(), 64, "test");
  EXPECT_TRUE(v.ok()) << r.denied_response().body();
  return v.ok() ? *v : google::protobuf::Value();
}

std::string Header(
    const google::protobuf::RepeatedPtrField<envoy::config::core::v3::HeaderValueOption>& headers,
    absl::string_view key) {
  for (const auto& h : headers) {
    if (h.header().key() == key) return h.header().value();
  }
  return "(none)";
}

TEST(ExtAuthzMappingTest, ToolCallBecomesACheckRequest) {
  Read r = ReadIt(Post(Call("7", "read_file", "{\"path\":\"/a\"}")));
  ASSERT_TRUE(r.ok) << r.error.message;
  ASSERT_EQ(r.request.calls.size(), 1);
  const v1::CheckRequest& c = r.request.calls[0];
  EXPECT_EQ(c.tool(), "read_file");
  EXPECT_EQ(c.grant(), "agent-1");
  EXPECT_EQ(c.server(), "mcp.example:8080");  // :authority without anything better.
  EXPECT_EQ(c.request_id(), "7");
  EXPECT_EQ(c.args().fields().at("path").string_value(), "/a");
  EXPECT_FALSE(r.request.batch);
}

TEST(ExtAuthzMappingTest, ServerGrantAndSessionSources) {
  auth::CheckRequest req = Post(Call("\"abc\"", "t", "{}"));
  auto* http = req.mutable_attributes()->mutable_request()->mutable_http();
  (*http->mutable_headers())["x-toolgate-server"] = "from-header";
  (*http->mutable_headers())["mcp-session-id"] = "s-1";
  Read r = ReadIt(req);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.request.calls[0].server(), "from-header");
  EXPECT_EQ(r.request.calls[0].session(), "s-1");
  EXPECT_EQ(r.request.calls[0].request_id(), "abc");
  (*req.mutable_attributes()->mutable_context_extensions())["server"] = "from-route";
  req.mutable_attributes()->mutable_source()->set_principal("spiffe://a/b");
  ExtAuthzOptions principal;
  principal.grant_from = ExtAuthzOptions::GrantFrom::kPrincipal;
  r = ReadIt(req, principal);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.request.calls[0].server(), "from-route");
  EXPECT_EQ(r.request.calls[0].grant(), "spiffe://a/b");
  // No principal: undecidable, and the message says why.
  req.mutable_attributes()->mutable_source()->clear_principal();
  r = ReadIt(req, principal);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.http_status, 400);
  EXPECT_THAT(r.error.message, HasSubstr("no principal"));
  // Raw headers (encode_raw_headers) are read too.
  auth::CheckRequest raw = Post(Call("1", "t", "{}"));
  auto* rh = raw.mutable_attributes()->mutable_request()->mutable_http();
  rh->mutable_headers()->clear();
  auto* g = rh->mutable_header_map()->add_headers();
  g->set_key("x-toolgate-grant");
  g->set_raw_value("raw-grant");
  r = ReadIt(raw);
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(r.request.calls[0].grant(), "raw-grant");
}

TEST(ExtAuthzMappingTest, OtherMethodsPassOrAreRefused) {
  for (const char* body : {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}",
                           "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}",
                           "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}"}) {
    Read r = ReadIt(Post(body));
    ASSERT_TRUE(r.ok) << body << ": " << r.error.message;
    EXPECT_TRUE(r.request.calls.empty());
    EXPECT_TRUE(r.request.refused_other.empty());
    ExtAuthzOptions deny;
    deny.other_methods_allowed = false;
    r = ReadIt(Post(body), deny);
    ASSERT_TRUE(r.ok);
    EXPECT_FALSE(r.request.refused_other.empty()) << body;
  }
  auth::CheckRequest get;
  get.mutable_attributes()->mutable_request()->mutable_http()->set_method("GET");
  EXPECT_TRUE(ReadIt(get).ok);
  EXPECT_TRUE(ReadIt(get).request.messages.empty());
  // A grant is needed for tool calls only.
  auth::CheckRequest init = Post("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\"}");
  init.mutable_attributes()->mutable_request()->mutable_http()->mutable_headers()->erase(
      "x-toolgate-grant");
  EXPECT_TRUE(ReadIt(init).ok);
}

TEST(ExtAuthzMappingTest, RefusedMethodNamesAreClippedOnACharacterBoundary) {
  ExtAuthzOptions deny;
  deny.other_methods_allowed = false;
  // 127 ASCII bytes, then a two-byte character across the 128-byte cut.
  const std::string method = std::string(127, 'm') + "\xc3\xa9" + std::string(50, 'x');
  Read r = ReadIt(Post(absl::StrCat("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"", method, "\"}")),
                  deny);
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(r.request.refused_other, std::string(127, 'm') + "...");
  auth::CheckResponse out;
  AnswerOtherRefused(r.request, &out);
  EXPECT_EQ(out.denied_response().status().code(), 403);
  std::string wire;
  ASSERT_TRUE(out.SerializeToString(&wire));
  auth::CheckResponse back;
  EXPECT_TRUE(back.ParseFromString(wire)) << "the answer must parse where Envoy reads it";
}

TEST(ExtAuthzMappingTest, BodyMissingOrTruncatedIsRefused) {
  auth::CheckRequest none = Post("");
  Read r = ReadIt(none);
  ASSERT_FALSE(r.ok);
  EXPECT_THAT(r.error.message, HasSubstr("missing"));
  (*none.mutable_attributes()
        ->mutable_request()
        ->mutable_http()
        ->mutable_headers())["content-length"] = "120";
  r = ReadIt(none);
  ASSERT_FALSE(r.ok);
  EXPECT_THAT(r.error.message, HasSubstr("with_request_body"));

  const std::string body = Call("1", "t", "{}");
  auth::CheckRequest partial = Post(body);
  (*partial.mutable_attributes()
        ->mutable_request()
        ->mutable_http()
        ->mutable_headers())["x-envoy-auth-partial-body"] = "true";
  r = ReadIt(partial);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.error.http_status, 413);
  EXPECT_THAT(r.error.message, HasSubstr("truncated"));

  auth::CheckRequest shorter = Post(body);
  (*shorter.mutable_attributes()
        ->mutable_request()
        ->mutable_http()
        ->mutable_headers())["content-length"] = std::to_string(body.size() + 1);
  r = ReadIt(shorter);
  ASSERT_FALSE(r.ok);
  EXPECT_THAT(r.error.message, HasSubstr("truncated"));
}

TEST(ExtAuthzMappingTest, HostileBodiesGetClearErrors) {
  struct Case {
    std::string body;
    int code;
    const char* says;
  } cases[] = {
      {"{not json", kJsonRpcInvalidRequest, "invalid JSON at byte 1"},
      {"\"text\"", kJsonRpcInvalidRequest, "must be an object"},
      {"[]", kJsonRpcInvalidRequest, "empty batch"},
      {"[1]", kJsonRpcInvalidRequest, "must be an object"},
      {"{\"id\":1,\"method\":7}", kJsonRpcInvalidRequest, "method: must be a string"},
      {"{\"id\":{},\"method\":\"tools/call\"}", kJsonRpcInvalidRequest, "id: must be"},
      {"{\"id\":1.5,\"method\":\"tools/call\"}", kJsonRpcInvalidRequest, "integer"},
      {"{\"id\":1e300,\"method\":\"tools/call\"}", kJsonRpcInvalidRequest, "integer"},
      {"{\"id\":1,\"method\":\"tools/call\"}", kJsonRpcInvalidParams, "params"},
      {"{\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":5}}", kJsonRpcInvalidParams,
       "params.name"},
      {"{\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\"}}", kJsonRpcInvalidParams,
       "params.name"},
      {"{\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\",\"arguments\":[1]}}",
       kJsonRpcInvalidParams, "params.arguments"},
      {"{\"s\":\"\xff\"}", kJsonRpcInvalidRequest, "not valid UTF-8"},
      {std::string(50000, '['), kJsonRpcInvalidRequest, "nested deeper than 35"},
      {std::string(200000, ' '), kJsonRpcInvalidRequest, "over the limit"},
  };
  for (const Case& c : cases) {
    Read r = ReadIt(Post(c.body));
    ASSERT_FALSE(r.ok) << c.body.substr(0, 80);
    EXPECT_EQ(r.error.jsonrpc_code, c.code) << c.body.substr(0, 80);
    EXPECT_THAT(r.error.message, HasSubstr(c.says)) << c.body.substr(0, 80);
  }
  std::string batch = "[";
  for (size_t i = 0; i <= kMaxMcpBatch; ++i)
    absl::StrAppend(&batch, i ? "," : "", Call("1", "t", "{}"));
  batch += "]";
  Read r = ReadIt(Post(batch));
  ASSERT_FALSE(r.ok);
  EXPECT_THAT(r.error.message, HasSubstr("over the limit of 32"));
}

v1::CheckResponse Decision(v1::Decision d, absl::string_view reason) {
  v1::CheckResponse r;
  r.set_decision(d);
  r.set_reason(std::string(reason));
  r.set_rule("tools.x");
  r.set_decision_id("0123");
  r.set_policy_version("rev-1");
  return r;
}

TEST(ExtAuthzMappingTest, AllowedAddsHeadersUpstream) {
  v1::CheckResponse a = Decision(v1::DECISION_ALLOW, "");
  auth::CheckResponse out;
  AnswerAllowed({&a}, &out);
  EXPECT_EQ(out.status().code(), 0);
  EXPECT_EQ(Header(out.ok_response().headers(), "x-toolgate-decision-id"), "0123");
  EXPECT_EQ(Header(out.ok_response().headers(), "x-toolgate-revision"), "rev-1");
  EXPECT_EQ(out.ok_response().headers(0).append_action(),
            envoy::config::core::v3::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD);
  auth::CheckResponse none;
  AnswerAllowed({}, &none);
  EXPECT_EQ(none.status().code(), 0);
  EXPECT_EQ(none.ok_response().headers_to_remove_size(), 2);
}

TEST(ExtAuthzMappingTest, RefusalIsAToolErrorWithTheDecision) {
  Read r = ReadIt(Post(Call("\"req-9\"", "run_command", "{}")));
  ASSERT_TRUE(r.ok);
  v1::CheckResponse d = Decision(v1::DECISION_DENY, "arguments do not match the schema");
  auto* v = d.add_violations();
  v->set_path("/command");
  v->set_message("required");
  auth::CheckResponse out;
  AnswerRefused(r.request, 0, d, ExtAuthzOptions{}, &out);
  EXPECT_NE(out.status().code(), 0);
  EXPECT_EQ(out.denied_response().status().code(), 200);
  EXPECT_EQ(Header(out.denied_response().headers(), "content-type"), "application/json");
  const google::protobuf::Value body = Body(out);
  const auto& f = body.struct_value().fields();
  EXPECT_EQ(f.at("id").string_value(), "req-9");
  const auto& result = f.at("result").struct_value().fields();
  EXPECT_TRUE(result.at("isError").bool_value());
  const std::string text =
      result.at("content").list_value().values(0).struct_value().fields().at("text").string_value();
  EXPECT_THAT(text, HasSubstr("arguments do not match"));
  EXPECT_THAT(text, HasSubstr("/command: required"));
  const auto& meta =
      result.at("_meta").struct_value().fields().at("toolgate/decision").struct_value().fields();
  EXPECT_EQ(meta.at("decision").string_value(), "deny");
  EXPECT_EQ(meta.at("decision_id").string_value(), "0123");
  EXPECT_EQ(meta.at("violations").list_value().values_size(), 1);
  EXPECT_EQ(meta.count("retry_after_ms"), 0u);
}

TEST(ExtAuthzMappingTest, RateLimitedSetsRetryAfterAndHttpModeUses429) {
  Read r = ReadIt(Post(Call("12", "wait", "{}")));
  ASSERT_TRUE(r.ok);
  v1::CheckResponse d = Decision(v1::DECISION_RATE_LIMITED, "limit reached");
  d.mutable_retry_after()->set_seconds(41);
  d.mutable_retry_after()->set_nanos(5'000'000);
  auth::CheckResponse out;
  AnswerRefused(r.request, 0, d, ExtAuthzOptions{}, &out);
  EXPECT_EQ(out.denied_response().status().code(), 200);
  EXPECT_EQ(Header(out.denied_response().headers(), "retry-after"), "42");
  const google::protobuf::Value body = Body(out);
  auto meta = body.struct_value().fields().at("result").struct_value().fields().at("_meta");
  EXPECT_EQ(meta.struct_value()
                .fields()
                .at("toolgate/decision")
                .struct_value()
                .fields()
                .at("retry_after_ms")
                .number_value(),
            41005);

  ExtAuthzOptions http;
  http.deny_as = ExtAuthzOptions::DenyAs::kHttp;
  auth::CheckResponse as_http;
  AnswerRefused(r.request, 0, d, http, &as_http);
  EXPECT_EQ(as_http.denied_response().status().code(), 429);
  const google::protobuf::Value http_body = Body(as_http);
  const auto& f = http_body.struct_value().fields();
  EXPECT_EQ(f.at("id").number_value(), 12);
  EXPECT_EQ(f.at("error").struct_value().fields().at("code").number_value(), kJsonRpcRefused);
  auth::CheckResponse denied;
  AnswerRefused(r.request, 0, Decision(v1::DECISION_DENY, "no"), http, &denied);
  EXPECT_EQ(denied.denied_response().status().code(), 403);
}

TEST(ExtAuthzMappingTest, RefusedBatchAnswersEveryRequest) {
  const std::string batch =
      absl::StrCat("[", Call("1", "a", "{}"), ",", Call("2", "b", "{}"),
                   ",{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\"},",
                   "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\"}]");
  Read r = ReadIt(Post(batch));
  ASSERT_TRUE(r.ok) << r.error.message;
  ASSERT_TRUE(r.request.batch);
  ASSERT_EQ(r.request.calls.size(), 2);
  auth::CheckResponse out;
  AnswerRefused(r.request, 1, Decision(v1::DECISION_DENY, "b is not allowed"), {}, &out);
  const google::protobuf::Value body = Body(out);
  const auto& answers = body.list_value().values();
  ASSERT_EQ(answers.size(), 3);  // Not the notification.
  EXPECT_THAT(answers[0]
                  .struct_value()
                  .fields()
                  .at("result")
                  .struct_value()
                  .fields()
                  .at("content")
                  .list_value()
                  .values(0)
                  .struct_value()
                  .fields()
                  .at("text")
                  .string_value(),
              HasSubstr("not sent"));
  EXPECT_TRUE(
      answers[1].struct_value().fields().at("result").struct_value().fields().count("_meta"));
  EXPECT_TRUE(answers[2].struct_value().fields().count("error"));
}

TEST(ExtAuthzMappingTest, UndecidableIs400WithAJsonRpcError) {
  Read r = ReadIt(Post("{\"id\":5,\"method\":\"tools/call\",\"params\":{}}"));
  ASSERT_FALSE(r.ok);
  auth::CheckResponse out;
  AnswerUndecidable(r.error, &out);
  EXPECT_EQ(out.denied_response().status().code(), 400);
  EXPECT_EQ(out.status().code(), 3);
  const google::protobuf::Value body = Body(out);
  const auto& f = body.struct_value().fields();
  EXPECT_EQ(f.at("id").number_value(), 5);
  EXPECT_EQ(f.at("error").struct_value().fields().at("code").number_value(), kJsonRpcInvalidParams);
}

}  // namespace
}  // namespace toolgate
