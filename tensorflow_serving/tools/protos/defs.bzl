"""proto_sources: the write_protos output as a Bazel tree artifact.

Targets that need the .proto files (tests, or a user's own protoc rules)
depend on one directory instead of a hand-kept list of files, so a wheel
that adds or drops a .proto needs no BUILD change.
"""

def _proto_sources_impl(ctx):
    out = ctx.actions.declare_directory(ctx.attr.name)
    args = ctx.actions.args()
    if ctx.attr.include_well_known_types:
        args.add("--include_well_known_types")
    args.add(out.path)
    # Quiet unless it fails: TensorFlow logs on import.
    ctx.actions.run_shell(
        command = 'log=$("$@" 2>&1) || { echo "$log" >&2; exit 1; }',
        arguments = [ctx.executable._write_protos.path, args],
        tools = [ctx.executable._write_protos],
        outputs = [out],
        env = {"TF_CPP_MIN_LOG_LEVEL": "3"},
        mnemonic = "WriteProtos",
        progress_message = "Writing .proto sources into %s" % out.short_path,
    )
    return [DefaultInfo(
        files = depset([out]),
        runfiles = ctx.runfiles(files = [out]),
    )]

proto_sources = rule(
    implementation = _proto_sources_impl,
    doc = "A directory of .proto files rendered from the pinned wheels.",
    attrs = {
        "include_well_known_types": attr.bool(
            doc = "Also write google/protobuf/*.proto.",
        ),
        "_write_protos": attr.label(
            default = "//tensorflow_serving/tools/protos:write_protos",
            executable = True,
            cfg = "exec",
        ),
    },
)
