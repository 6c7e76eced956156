"""proto_source: hand-written sources round-trip through render and protoc.

Each case compiles .proto text with protoc, renders the descriptors back to
text, compiles that again and requires the same FileDescriptorProto. protoc
is the judge of both the syntax and the name resolution.
"""

from __future__ import annotations

from collections.abc import Mapping
import textwrap

from absl.testing import absltest
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool

from tensorflow_serving.tools.protos import name_scope
from tensorflow_serving.tools.protos import proto_source
from tensorflow_serving.tools.protos import protoc_util

PROTO3 = r"""
syntax = "proto3";
package demo.v1;
import "google/protobuf/any.proto";
import "google/protobuf/wrappers.proto";
option java_package = "com.example.demo";
option java_outer_classname = "DemoProtos";
option java_multiple_files = true;
option go_package = "example.com/demo;demo";
option cc_enable_arenas = true;
option optimize_for = CODE_SIZE;
option objc_class_prefix = "DMO";
option csharp_namespace = "Example.Demo";

enum Color {
  option allow_alias = true;
  COLOR_UNSPECIFIED = 0;
  RED = 1;
  CRIMSON = 1 [deprecated = true];
  BLUE = -2;
  reserved 5, 10 to 20, 100 to max;
  reserved -9 to -5;
  reserved "GREEN", "YELLOW";
}

message Item {
  option deprecated = true;
  message Part {
    enum Kind {
      KIND_UNSPECIFIED = 0;
      BOLT = 1;
    }
    Kind kind = 1;
    map<string, Part> children = 2;
  }
  string name = 1 [json_name = "itemName"];
  optional int64 count = 2 [jstype = JS_STRING];
  repeated double weights = 3 [packed = false];
  repeated int32 ids = 4 [packed = true, deprecated = true];
  map<string, Part> parts = 5;
  message Between {}
  map<int64, Color> colors = 6;
  map<bool, bytes> flags = 7;
  oneof choice {
    string text = 8;
    Part part = 9;
    google.protobuf.Any detail = 10;
  }
  optional Part.Kind kind = 11;
  google.protobuf.Int32Value wrapped = 12;
  message Empty {}
  oneof other {
    Empty empty = 13;
    sfixed64 sf = 14;
  }
  uint32 u32 = 15;
  fixed32 f32 = 16;
  fixed64 f64 = 17;
  sint32 s32 = 18;
  sint64 s64 = 19;
  float fl = 40;
  bool b = 41;
  uint64 u64 = 42;
  sfixed32 sf32 = 43;
  bytes raw = 44;
  int32 message = 50;
  string option = 51;
  bool optional = 52;
  repeated int32 map = 53;
  int32 group = 54;
  int32 reserved = 55;
  int32 stream = 56;
  optional string maybe = 57;
  reserved 20 to 29, 30, 1000 to max;
  reserved "old_name", "older";
}

service Store {
  option deprecated = true;
  rpc Get(Item) returns (Item);
  rpc Watch(Item) returns (stream Item);
  rpc Upload(stream Item.Part) returns (google.protobuf.Int32Value) {
    option idempotency_level = IDEMPOTENT;
  }
  rpc Chat(stream Item) returns (stream Item) {
    option deprecated = true;
  }
}
"""

PROTO2 = r"""
syntax = "proto2";
package demo.legacy;

message Defaults {
  optional string s = 1 [default = "quote \" back\\slash \n tab\t é ü \001"];
  optional bytes b = 2 [default = "\000\001\377abc\"'"];
  optional float f_inf = 3 [default = inf];
  optional double d_ninf = 4 [default = -inf];
  optional double d_nan = 5 [default = nan];
  optional double d = 6 [default = 1.5e300];
  optional float f = 7 [default = 0.1];
  optional int32 neg = 8 [default = -42];
  optional uint64 big = 9 [default = 18446744073709551615];
  optional bool flag = 10 [default = true];
  optional Mode mode = 11 [default = FAST];
  required int32 req = 12;
  repeated int32 packed_ints = 13 [packed = true];
  optional sint64 min64 = 14 [default = -9223372036854775808];
  optional string empty_default = 23 [default = ""];
  enum Mode {
    SLOW = 1;
    FAST = 2;
  }
  optional group Result = 15 {
    required string url = 16;
    repeated group Snippet = 17 {
      optional string text = 18;
    }
  }
  message Plain {
    optional int32 a = 1;
  }
  map<string, Plain> plain_map = 19;
  oneof pick {
    int32 n = 20;
    group Choice = 21 {
      optional int32 c = 22;
    }
  }
  extensions 100 to 199;
  extensions 500, 1000 to max;
  reserved 300 to 310;
  reserved "gone";
}

message Set {
  option message_set_wire_format = true;
  extensions 4 to max;
}

extend Defaults {
  optional int32 ext_int = 100;
  repeated string ext_strings = 101;
  optional group ExtGroup = 102 {
    optional int32 v = 1;
  }
}

message Holder {
  extend Defaults {
    optional Holder holder = 110;
  }
  extend Set {
    optional Holder in_set = 12345;
  }
  optional int32 id = 1 [deprecated = true, json_name = "ID"];
}
"""

# Name lookup: the shortest name protoc resolves to the same type.
NAMES = {
    "p/a.proto": (
        """
        syntax = "proto3";
        package p;
        message X {}
        message Shared {}
    """
    ),
    "p/q/b.proto": (
        """
        syntax = "proto3";
        package p.q;
        message X {}
    """
    ),
    # b.proto's p.q.X is not imported here, so plain `X` is p.X.
    "p/q/c.proto": (
        """
        syntax = "proto3";
        package p.q;
        import "p/a.proto";
        message UsesOuter {
          p.X x = 1;
        }
    """
    ),
    "p/f.proto": (
        """
        syntax = "proto3";
        package p;
        import public "p/a.proto";
        message F {}
    """
    ),
    # a.proto's types through f.proto's `import public`.
    "p/r/g.proto": (
        """
        syntax = "proto3";
        package p.r;
        import "p/f.proto";
        message G {
          p.X x = 1;
          p.Shared s = 2;
          p.F f = 3;
        }
    """
    ),
    "foo/bar/d.proto": (
        """
        syntax = "proto3";
        package foo.bar;
        message Baz {}
        message Outer {
          message foo {
            message bar {
              message Baz {}
            }
          }
          message Baz {}
          Baz inner = 1;
          .foo.bar.Baz outer = 2;
          foo.bar.Baz nested = 3;
        }
        // The field's own name is not a type: lookup goes on outwards.
        message Q {
          .foo.bar.Baz Baz = 1;
        }
    """
    ),
    "foo/bar/e.proto": (
        """
        syntax = "proto3";
        package foo.bar;
        import "foo/bar/d.proto";
        message Other {
          message bar {}
          message foo {}
          message Baz {}
          .foo.bar.Baz top = 1;
          map<string, .foo.bar.Baz> by_name = 2;
        }
    """
    ),
    "kw/k.proto": (
        """
        syntax = "proto3";
        package kw;
        message optional {}
        message stream {}
        message message {}
        message Use {
          .kw.optional a = 1;
          repeated .kw.message m = 2;
        }
        service S {
          rpc M(.kw.stream) returns (.kw.stream);
        }
    """
    ),
}

OPTIONS_PROTO = """
syntax = "proto2";
package myopts;
import "google/protobuf/descriptor.proto";
message Rule {
  optional int32 min = 1;
  repeated string tags = 2;
}
extend google.protobuf.FieldOptions {
  optional int32 weight = 50001;
  optional Rule rule = 50002;
  repeated string labels = 50003;
}
extend google.protobuf.MessageOptions {
  optional string table = 50010;
}
extend google.protobuf.FileOptions {
  optional bool audited = 50020;
}
"""

USES_OPTIONS_PROTO = """
syntax = "proto3";
package app;
import "tf_serving_test/options.proto";
option (myopts.audited) = true;
message Row {
  option (myopts.table) = "rows";
  int32 id = 1 [
    (myopts.weight) = 3,
    (myopts.rule) = { min: 1 tags: "a" tags: "b" },
    (myopts.labels) = "x",
    (myopts.labels) = "y"
  ];
}
"""


def _dedent(sources: Mapping[str, str]) -> dict[str, str]:
  return {name: textwrap.dedent(text) for name, text in sources.items()}


class RoundTripTest(absltest.TestCase):

  def round_trip(self, sources: Mapping[str, str]) -> dict[str, str]:
    """Renders every file of `sources`; asserts protoc gives it back."""
    original = protoc_util.compile_sources(sources)
    table = name_scope.SymbolTable(original.values())
    rendered = {
        name: proto_source.render_file(original[name], table)
        for name in sources
    }
    again = protoc_util.compile_sources(rendered)
    for name in sources:
      self.assertMultiLineEqual(
          str(protoc_util.normalized(original[name])),
          str(protoc_util.normalized(again[name])),
          f"{name} rendered as:\n{rendered[name]}",
      )
    return rendered

  def test_proto3(self):
    text = self.round_trip({"demo/v1/demo.proto": PROTO3})["demo/v1/demo.proto"]
    self.assertIn("  map<string, Part> parts = 5;\n", text)
    self.assertIn("  map<int64, Color> colors = 6;\n", text)
    self.assertIn("  optional int64 count = 2 [jstype = JS_STRING];\n", text)
    self.assertIn('  string name = 1 [json_name = "itemName"];\n', text)
    self.assertIn("  reserved 20 to 29, 30, 1000 to max;\n", text)
    self.assertIn("  reserved 5, 10 to 20, 100 to max, -9 to -5;\n", text)
    self.assertIn(
        "  rpc Watch(Item) returns (stream Item);\n"
        "  rpc Upload(stream Item.Part) returns"
        " (google.protobuf.Int32Value) {\n"
        "    option idempotency_level = IDEMPOTENT;\n"
        "  }\n",
        text,
    )
    self.assertIn("  oneof choice {\n    string text = 8;\n", text)
    self.assertNotIn("Entry", text)  # Map entries are implicit.
    self.assertNotIn("_maybe", text)  # So are proto3 optional's oneofs.

  def test_proto2(self):
    text = self.round_trip({"demo/legacy/legacy.proto": PROTO2})[
        "demo/legacy/legacy.proto"
    ]
    self.assertIn("  optional group Result = 15 {\n", text)
    self.assertIn("    repeated group Snippet = 17 {\n", text)
    self.assertIn("  optional float f_inf = 3 [default = inf];\n", text)
    self.assertIn("  optional double d_nan = 5 [default = nan];\n", text)
    self.assertIn("  extensions 1000 to max;\n", text)
    self.assertIn("  extensions 4 to max;\n", text)
    self.assertIn("extend Defaults {\n  optional int32 ext_int = 100;", text)

  def test_names_are_the_shortest_that_resolve(self):
    rendered = self.round_trip(_dedent(NAMES))
    self.assertIn("  X x = 1;\n", rendered["p/q/c.proto"])
    self.assertIn("  X x = 1;\n  Shared s = 2;\n", rendered["p/r/g.proto"])
    d = rendered["foo/bar/d.proto"]
    self.assertIn("  Baz inner = 1;\n", d)
    self.assertIn("  bar.Baz outer = 2;\n", d)  # `foo.` would be Outer.foo.
    self.assertIn("  foo.bar.Baz nested = 3;\n", d)
    self.assertIn("  Baz Baz = 1;\n", d)
    e = rendered["foo/bar/e.proto"]
    self.assertIn("  .foo.bar.Baz top = 1;\n", e)  # Every suffix is shadowed.
    self.assertIn("  map<string, .foo.bar.Baz> by_name = 2;\n", e)
    k = rendered["kw/k.proto"]
    self.assertIn("  kw.optional a = 1;\n", k)
    self.assertIn("  repeated kw.message m = 2;\n", k)
    self.assertIn("  rpc M(kw.stream) returns (kw.stream);\n", k)

  def test_custom_options_known_to_the_process(self):
    sources = {
        "tf_serving_test/options.proto": OPTIONS_PROTO,
        "app/uses.proto": USES_OPTIONS_PROTO,
    }
    options_file = protoc_util.compile_sources(sources)[
        "tf_serving_test/options.proto"
    ]
    # As importing its _pb2 module would: options now parse as extensions.
    descriptor_pool.Default().Add(options_file)
    text = self.round_trip(sources)["app/uses.proto"]
    self.assertIn("option (.myopts.audited) = true;\n", text)
    self.assertIn('  option (.myopts.table) = "rows";\n', text)
    self.assertIn(
        '[(.myopts.weight) = 3, (.myopts.rule) = { min: 1 tags: "a" tags: "b"'
        ' }, (.myopts.labels) = "x", (.myopts.labels) = "y"]',
        text,
    )


class RefusalTest(absltest.TestCase):

  def test_unknown_custom_option(self):
    sources = {
        "unknown/options.proto": (
            """
            syntax = "proto2";
            package unknownopts;
            import "google/protobuf/descriptor.proto";
            extend google.protobuf.FieldOptions {
              optional int32 weight = 60001;
            }
        """
        ),
        "unknown/uses.proto": (
            """
            syntax = "proto3";
            package unknown_app;
            import "unknown/options.proto";
            message Row {
              int32 id = 1 [(unknownopts.weight) = 3];
            }
        """
        ),
    }
    files = protoc_util.compile_sources(_dedent(sources))
    table = name_scope.SymbolTable(files.values())
    with self.assertRaisesRegex(ValueError, "unknown_app.Row.id: options"):
      proto_source.render_file(files["unknown/uses.proto"], table)

  def test_editions(self):
    file = descriptor_pb2.FileDescriptorProto(
        name="e.proto", syntax="editions", edition=descriptor_pb2.EDITION_2023
    )
    table = name_scope.SymbolTable([file])
    with self.assertRaisesRegex(ValueError, "editions"):
      proto_source.render_file(file, table)

  def test_oneof_without_fields(self):
    file = descriptor_pb2.FileDescriptorProto(name="o.proto", syntax="proto3")
    message = file.message_type.add(name="M")
    message.oneof_decl.add(name="empty")
    table = name_scope.SymbolTable([file])
    with self.assertRaisesRegex(ValueError, "oneof without fields"):
      proto_source.render_file(file, table)

  def test_oneof_split_by_another_field(self):
    file = descriptor_pb2.FileDescriptorProto(name="s.proto", syntax="proto3")
    message = file.message_type.add(name="M")
    message.oneof_decl.add(name="pick")
    int32 = descriptor_pb2.FieldDescriptorProto.TYPE_INT32
    message.field.add(name="a", number=1, type=int32, oneof_index=0)
    message.field.add(name="b", number=2, type=int32)
    message.field.add(name="c", number=3, type=int32, oneof_index=0)
    table = name_scope.SymbolTable([file])
    with self.assertRaisesRegex(ValueError, "oneof pick are not contiguous"):
      proto_source.render_file(file, table)

  def test_map_entry_without_map_field(self):
    file = descriptor_pb2.FileDescriptorProto(name="m.proto", syntax="proto3")
    entry = file.message_type.add(name="M").nested_type.add(name="XEntry")
    entry.options.map_entry = True
    table = name_scope.SymbolTable([file])
    with self.assertRaisesRegex(ValueError, "map entry"):
      proto_source.render_file(file, table)


class JsonNameTest(absltest.TestCase):

  def test_default_json_name(self):
    self.assertEqual(proto_source.default_json_name("model_spec"), "modelSpec")
    self.assertEqual(proto_source.default_json_name("int64_val"), "int64Val")
    self.assertEqual(proto_source.default_json_name("a__b_"), "aB")
    self.assertEqual(proto_source.default_json_name("ID"), "ID")


if __name__ == "__main__":
  absltest.main()
