// Tests of the UTF-8 pass over a serialized CheckRequest.
#include "server/service/request_wire.h"

#include <string>

#include "gtest/gtest.h"
#include "toolgate/v1/decision.pb.h"

namespace toolgate {
namespace {

// Serializes `req`, then replaces the '#' of every "#!" in the bytes with
// `byte`: protobuf writes valid strings, the test makes them invalid
// afterwards (a two-byte marker, so that no length byte is mistaken for it).
std::string Wire(const v1::CheckRequest& req, char byte = '\xE9') {
  std::string wire = req.SerializeAsString();
  for (size_t i = wire.find("#!"); i != std::string::npos; i = wire.find("#!", i + 1)) {
    wire[i] = byte;
  }
  return wire;
}

v1::CheckRequest Req(const std::string& tool) {
  v1::CheckRequest r;
  r.set_tool(tool);
  r.set_grant("g");
  return r;
}

std::string Problem(const std::string& wire) {
  const absl::Status s = CheckRequestWireUtf8(wire, 100);
  if (s.ok()) return "ok";
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  return std::string(s.message());
}

TEST(CheckRequestWireUtf8, ValidRequestsPass) {
  v1::CheckRequest r = Req("delete_\xE4\xB8\xAD");
  (*r.mutable_args()->mutable_fields())["caf\xC3\xA9"].set_string_value("\xF0\x9F\x98\x80");
  r.set_dry_run(true);
  EXPECT_EQ(Problem(Wire(r)), "ok");
  EXPECT_EQ(Problem(""), "ok");
}

TEST(CheckRequestWireUtf8, EachNameFieldIsNamed) {
  EXPECT_EQ(Problem(Wire(Req("delete_#!x"))), "tool: not valid UTF-8 at byte 7");
  v1::CheckRequest r = Req("t");
  r.set_grant("#!");
  EXPECT_EQ(Problem(Wire(r)), "grant: not valid UTF-8 at byte 0");
  r = Req("t");
  r.set_server("s#!");
  EXPECT_EQ(Problem(Wire(r)), "server: not valid UTF-8 at byte 1");
  r = Req("t");
  r.set_session("ss#!");
  EXPECT_EQ(Problem(Wire(r)), "session: not valid UTF-8 at byte 2");
  r = Req("t");
  r.set_policy_version("#!");
  EXPECT_EQ(Problem(Wire(r)), "policy_version: not valid UTF-8 at byte 0");
  r = Req("t");
  r.set_request_id("id-#!");
  EXPECT_EQ(Problem(Wire(r)), "request_id: not valid UTF-8 at byte 3");
  r = Req("t");
  r.set_args_json("{\"a\": \"#!\"}");
  EXPECT_EQ(Problem(Wire(r)), "args_json: not valid UTF-8 at byte 7");
}

TEST(CheckRequestWireUtf8, ArgsKeysAndValuesAreLocated) {
  v1::CheckRequest r = Req("t");
  auto& fields = *r.mutable_args()->mutable_fields();
  fields["path"].set_string_value("/tmp/#!");
  EXPECT_EQ(Problem(Wire(r)), "args.path: string value not valid UTF-8 at byte 5");

  r = Req("t");
  auto& outer =
      *(*r.mutable_args()->mutable_fields())["a"].mutable_struct_value()->mutable_fields();
  auto& list = *outer["b"].mutable_list_value();
  list.add_values()->set_number_value(1);
  list.add_values()->set_string_value("x#!");
  EXPECT_EQ(Problem(Wire(r)), "args.a.b[1]: string value not valid UTF-8 at byte 1");

  r = Req("t");
  (*r.mutable_args()->mutable_fields())["k#!y"].set_bool_value(true);
  EXPECT_EQ(Problem(Wire(r)), "args: key not valid UTF-8 at byte 1");
}

TEST(CheckRequestWireUtf8, MalformedOrTooDeepIsLeftToTheParse) {
  EXPECT_EQ(Problem(std::string("\x0a\x05zz", 4)), "ok");  // Truncated string.
  EXPECT_EQ(Problem(std::string("\xff\xff\xff", 3)), "ok");
  // Nested deeper than the limit: not scanned (the parse refuses it).
  v1::CheckRequest r = Req("t");
  google::protobuf::Struct* s = r.mutable_args();
  for (int i = 0; i < 10; ++i) s = (*s->mutable_fields())["n"].mutable_struct_value();
  (*s->mutable_fields())["v"].set_string_value("#!");
  const std::string wire = Wire(r);
  EXPECT_EQ(Problem(wire), "args.n.n.n.n.n.n.n.n.n.n.v: string value not valid UTF-8 at byte 0");
  EXPECT_TRUE(CheckRequestWireUtf8(wire, 5).ok());
}

}  // namespace
}  // namespace toolgate
