/*
 * Builds a fixed set of REAPI messages with protobuf-c and prints their
 * encodings, or re-encodes messages given on stdin. check_canonical.py
 * builds the same messages with Python protobuf (which always encodes in
 * field-number order) and demands byte-identical output, so a digest
 * computed here equals the one any other REAPI client computes.
 *
 * Output, one message per line:  LABEL TYPE HEX HASH/SIZE
 * (HEX is "-" for an empty encoding.)
 *   canonical_gen emit          the built-in messages
 *   canonical_gen reserialize   read "LABEL TYPE HEX" lines, unpack, repack
 */
#include "reapi_digest.h"

#include "build/bazel/remote/execution/v2/remote_execution.pb-c.h"
#include "google/bytestream/bytestream.pb-c.h"
#include "google/longrunning/operations.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The generated names are long; the test reads better with short ones. */
#define V2(x) BUILD__BAZEL__REMOTE__EXECUTION__V2__##x
typedef Build__Bazel__Remote__Execution__V2__Action Action;
typedef Build__Bazel__Remote__Execution__V2__ActionResult ActionResult;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse
    BatchReadBlobsResponse;
typedef Build__Bazel__Remote__Execution__V2__BatchReadBlobsResponse__Response
    BatchReadBlobsResponse_Response;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest
    BatchUpdateBlobsRequest;
typedef Build__Bazel__Remote__Execution__V2__BatchUpdateBlobsRequest__Request
    BatchUpdateBlobsRequest_Request;
typedef Build__Bazel__Remote__Execution__V2__CacheCapabilities
    CacheCapabilities;
typedef Build__Bazel__Remote__Execution__V2__Command Command;
typedef Build__Bazel__Remote__Execution__V2__Command__EnvironmentVariable
    EnvVar;
typedef Build__Bazel__Remote__Execution__V2__Digest Digest;
typedef Build__Bazel__Remote__Execution__V2__DigestFunction__Value DigestFn;
typedef Build__Bazel__Remote__Execution__V2__Compressor__Value CompressorV;
typedef Build__Bazel__Remote__Execution__V2__Directory Directory;
typedef Build__Bazel__Remote__Execution__V2__DirectoryNode DirectoryNode;
typedef Build__Bazel__Remote__Execution__V2__ExecuteOperationMetadata
    ExecuteOperationMetadata;
typedef Build__Bazel__Remote__Execution__V2__ExecuteRequest ExecuteRequest;
typedef Build__Bazel__Remote__Execution__V2__ExecuteResponse ExecuteResponse;
typedef Build__Bazel__Remote__Execution__V2__ExecuteResponse__ServerLogsEntry
    ServerLogsEntry;
typedef Build__Bazel__Remote__Execution__V2__ExecutedActionMetadata
    ExecutedActionMetadata;
typedef Build__Bazel__Remote__Execution__V2__ExecutionCapabilities
    ExecutionCapabilities;
typedef Build__Bazel__Remote__Execution__V2__ExecutionPolicy ExecutionPolicy;
typedef Build__Bazel__Remote__Execution__V2__FileNode FileNode;
typedef Build__Bazel__Remote__Execution__V2__FindMissingBlobsResponse
    FindMissingBlobsResponse;
typedef Build__Bazel__Remote__Execution__V2__LogFile LogFile;
typedef Build__Bazel__Remote__Execution__V2__NodeProperties NodeProperties;
typedef Build__Bazel__Remote__Execution__V2__NodeProperty NodeProperty;
typedef Build__Bazel__Remote__Execution__V2__OutputDirectory OutputDirectory;
typedef Build__Bazel__Remote__Execution__V2__OutputFile OutputFile;
typedef Build__Bazel__Remote__Execution__V2__OutputSymlink OutputSymlink;
typedef Build__Bazel__Remote__Execution__V2__Platform Platform;
typedef Build__Bazel__Remote__Execution__V2__Platform__Property PlatformProp;
typedef Build__Bazel__Remote__Execution__V2__PriorityCapabilities
    PriorityCapabilities;
typedef Build__Bazel__Remote__Execution__V2__PriorityCapabilities__PriorityRange
    PriorityRange;
typedef Build__Bazel__Remote__Execution__V2__RequestMetadata RequestMetadata;
typedef Build__Bazel__Remote__Execution__V2__ResultsCachePolicy
    ResultsCachePolicy;
typedef Build__Bazel__Remote__Execution__V2__ServerCapabilities
    ServerCapabilities;
typedef Build__Bazel__Remote__Execution__V2__ActionCacheUpdateCapabilities
    ActionCacheUpdateCapabilities;
typedef Build__Bazel__Remote__Execution__V2__SymlinkNode SymlinkNode;
typedef Build__Bazel__Remote__Execution__V2__ToolDetails ToolDetails;
typedef Build__Bazel__Remote__Execution__V2__Tree Tree;
typedef Build__Bazel__Semver__SemVer SemVer;
typedef Google__Protobuf__Any Any;
typedef Google__Protobuf__Duration Duration;
typedef Google__Protobuf__Timestamp Timestamp;
typedef Google__Protobuf__UInt32Value UInt32Value;
typedef Google__Rpc__Status Status;

static int failed;

/* ------------------------------------------------------------ utilities */

static uint8_t *pack_alloc(const ProtobufCMessage *m, size_t *len) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    failed = 1;
    *len = 0;
    return NULL;
  }
  if (protobuf_c_message_pack(m, buf) != n) {
    fprintf(stderr, "%s: packed size mismatch\n", m->descriptor->name);
    failed = 1;
  }
  *len = n;
  return buf;
}

static void print_line(const char *label, const char *type, const uint8_t *buf,
                       size_t n) {
  reapi_digest d;
  char ds[REAPI_DIGEST_STR_MAX];
  reapi_digest_of(buf, n, &d);
  printf("%s %s ", label, type);
  if (n == 0)
    putchar('-');
  for (size_t i = 0; i < n; i++)
    printf("%02x", buf[i]);
  printf(" %s\n", reapi_digest_str(&d, ds));
}

static void emit(const char *label, const ProtobufCMessage *m) {
  size_t n;
  uint8_t *buf;
  if (!protobuf_c_message_check(m)) {
    fprintf(stderr, "%s: message fails protobuf_c_message_check\n", label);
    failed = 1;
    return;
  }
  buf = pack_alloc(m, &n);
  if (!buf)
    return;
  print_line(label, m->descriptor->name, buf, n);
  free(buf);
}

/* Fills d with the digest of a message's encoding; hash must hold 65 bytes
 * and outlive d. This is how Actions reference Commands and Directories. */
static void digest_msg(const ProtobufCMessage *m, Digest *d, char *hash) {
  size_t n;
  reapi_digest rd;
  uint8_t *buf = pack_alloc(m, &n);
  reapi_digest_of(buf, n, &rd);
  free(buf);
  memcpy(hash, rd.hash, REAPI_HASH_HEX_LEN + 1);
  d->hash = hash;
  d->size_bytes = rd.size;
}

/* Digest of a literal blob, e.g. a source file's contents. */
static void digest_blob(const char *content, Digest *d, char *hash) {
  reapi_digest rd;
  reapi_digest_of(content, strlen(content), &rd);
  memcpy(hash, rd.hash, REAPI_HASH_HEX_LEN + 1);
  d->hash = hash;
  d->size_bytes = rd.size;
}

/* Packs m into any (type.googleapis.com/<full name>); any_clear frees. */
static void any_pack(Any *any, const ProtobufCMessage *m) {
  static const char prefix[] = "type.googleapis.com/";
  size_t n = strlen(prefix) + strlen(m->descriptor->name) + 1;
  any->type_url = malloc(n);
  if (!any->type_url) {
    failed = 1;
    any->type_url = (char *)protobuf_c_empty_string;
    return;
  }
  snprintf(any->type_url, n, "%s%s", prefix, m->descriptor->name);
  any->value.data = pack_alloc(m, &any->value.len);
}

static void any_clear(Any *any) {
  if (any->type_url != protobuf_c_empty_string)
    free(any->type_url);
  free(any->value.data);
}

static ProtobufCBinaryData bin(const void *data, size_t len) {
  ProtobufCBinaryData b;
  b.data = (uint8_t *)data;
  b.len = len;
  return b;
}

/* ------------------------------------------------------------- messages */

/* Hashes of the Directory and Command messages, referenced by later ones. */
static char h_src[65], h_root[65], h_empty[65], h_cmd_full[65], h_cmd_min[65];
static Digest d_src = V2(DIGEST__INIT), d_root = V2(DIGEST__INIT);
static Digest d_empty = V2(DIGEST__INIT), d_cmd_full = V2(DIGEST__INIT);
static Digest d_cmd_min = V2(DIGEST__INIT);
static char h_action[65];
static Digest d_action = V2(DIGEST__INIT);

static void build_directories(void) {
  /* src/: two plain files. */
  char h_main[65], h_lib[65];
  Digest dg_main = V2(DIGEST__INIT), dg_lib = V2(DIGEST__INIT);
  FileNode f_lib = V2(FILE_NODE__INIT), f_main = V2(FILE_NODE__INIT);
  FileNode *src_files[] = {&f_lib, &f_main};
  Directory src = V2(DIRECTORY__INIT);

  digest_blob("pub fn f() {}\n", &dg_lib, h_lib);
  digest_blob("fn main() { println!(\"hi\"); }\n", &dg_main, h_main);
  f_lib.name = "lib.rs";
  f_lib.digest = &dg_lib;
  f_main.name = "main.rs";
  f_main.digest = &dg_main;
  src.n_files = 2;
  src.files = src_files;
  emit("dir_src", &src.base);
  digest_msg(&src.base, &d_src, h_src);

  /* Root: files with properties, a subdirectory, symlinks, and node
   * properties on the directory itself. */
  char h_toml[65], h_sh[65];
  Digest dg_toml = V2(DIGEST__INIT), dg_sh = V2(DIGEST__INIT);
  FileNode f_toml = V2(FILE_NODE__INIT), f_sh = V2(FILE_NODE__INIT);
  FileNode *root_files[] = {&f_toml, &f_sh};
  Timestamp sh_mtime = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  UInt32Value sh_mode = GOOGLE__PROTOBUF__UINT32_VALUE__INIT;
  NodeProperties sh_props = V2(NODE_PROPERTIES__INIT);
  DirectoryNode dn_src = V2(DIRECTORY_NODE__INIT);
  DirectoryNode *root_dirs[] = {&dn_src};
  SymlinkNode s_cur = V2(SYMLINK_NODE__INIT), s_up = V2(SYMLINK_NODE__INIT);
  SymlinkNode *root_links[] = {&s_cur, &s_up};
  UInt32Value zero_mode = GOOGLE__PROTOBUF__UINT32_VALUE__INIT;
  NodeProperties link_props = V2(NODE_PROPERTIES__INIT);
  NodeProperty np_a = V2(NODE_PROPERTY__INIT), np_b = V2(NODE_PROPERTY__INIT);
  NodeProperty *dir_np[] = {&np_a, &np_b};
  Timestamp dir_mtime = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  NodeProperties dir_props = V2(NODE_PROPERTIES__INIT);
  Directory root = V2(DIRECTORY__INIT);

  digest_blob("[package]\nname = \"demo\"\n", &dg_toml, h_toml);
  digest_blob("#!/bin/sh\nexit 0\n", &dg_sh, h_sh);
  f_toml.name = "Cargo.toml";
  f_toml.digest = &dg_toml;
  f_sh.name = "build.sh";
  f_sh.digest = &dg_sh;
  f_sh.is_executable = 1;
  sh_mtime.seconds = 1700000000;
  sh_mtime.nanos = 123456789;
  sh_mode.value = 0755;
  sh_props.mtime = &sh_mtime;
  sh_props.unix_mode = &sh_mode;
  f_sh.node_properties = &sh_props;
  dn_src.name = "src";
  dn_src.digest = &d_src;
  s_cur.name = "current";
  s_cur.target = "src/main.rs";
  s_up.name = "up";
  s_up.target = "../outside/\xc3\xa9t\xc3\xa9";
  /* A present wrapper holding 0 must still be encoded (as an empty
   * submessage), unlike a bare proto3 scalar. */
  link_props.unix_mode = &zero_mode;
  s_up.node_properties = &link_props;
  np_a.name = "owner";
  np_a.value = "root";
  np_b.name = "xattr.user.tag";
  np_b.value = "";
  dir_mtime.seconds = -1;
  dir_props.n_properties = 2;
  dir_props.properties = dir_np;
  dir_props.mtime = &dir_mtime;
  root.n_files = 2;
  root.files = root_files;
  root.n_directories = 1;
  root.directories = root_dirs;
  root.n_symlinks = 2;
  root.symlinks = root_links;
  root.node_properties = &dir_props;
  emit("dir_root", &root.base);
  digest_msg(&root.base, &d_root, h_root);

  Directory empty = V2(DIRECTORY__INIT);
  emit("dir_empty", &empty.base);
  digest_msg(&empty.base, &d_empty, h_empty);

  Directory *children[] = {&src};
  Tree tree = V2(TREE__INIT);
  tree.root = &root;
  tree.n_children = 1;
  tree.children = children;
  emit("tree", &tree.base);
}

static void build_commands(void) {
  char *args[] = {
      "/opt/rust/bin/rustc", "--crate-name", "demo",
      "--edition=2021",      "src/main.rs",  "-C",
      "opt-level=3",         "--cfg",        "feature=\"d\xc3\xa9j\xc3\xa0\""};
  EnvVar e1 = V2(COMMAND__ENVIRONMENT_VARIABLE__INIT);
  EnvVar e2 = V2(COMMAND__ENVIRONMENT_VARIABLE__INIT);
  EnvVar e3 = V2(COMMAND__ENVIRONMENT_VARIABLE__INIT);
  EnvVar *env[] = {&e1, &e2, &e3};
  char *out_files[] = {"target/debug/demo"};
  char *out_dirs[] = {"", "target/debug/deps"};
  char *out_paths[] = {"target/debug/demo", "target/debug/deps"};
  char *out_np[] = {"mtime", "unix_mode"};
  PlatformProp p1 = V2(PLATFORM__PROPERTY__INIT);
  PlatformProp p2 = V2(PLATFORM__PROPERTY__INIT);
  PlatformProp *props[] = {&p1, &p2};
  Platform plat = V2(PLATFORM__INIT);
  Command full = V2(COMMAND__INIT);

  e1.name = "CARGO_PKG_NAME";
  e1.value = "demo";
  e2.name = "EMPTY";
  e2.value = "";
  e3.name = "PATH";
  e3.value = "/usr/bin:/bin";
  p1.name = "OSFamily";
  p1.value = "linux";
  p2.name = "container-image";
  p2.value = "docker://rust@sha256:00ff";
  plat.n_properties = 2;
  plat.properties = props;

  full.n_arguments = sizeof(args) / sizeof(args[0]);
  full.arguments = args;
  full.n_environment_variables = 3;
  full.environment_variables = env;
  full.n_output_files = 1;
  full.output_files = out_files;
  full.n_output_directories = 2;
  full.output_directories = out_dirs;
  full.n_output_paths = 2;
  full.output_paths = out_paths;
  full.platform = &plat;
  full.working_directory = "work/crate";
  full.n_output_node_properties = 2;
  full.output_node_properties = out_np;
  full.output_directory_format =
      V2(COMMAND__OUTPUT_DIRECTORY_FORMAT__DIRECTORY_ONLY);
  emit("command_full", &full.base);
  digest_msg(&full.base, &d_cmd_full, h_cmd_full);

  /* The shape the wrapper sends today: argv, env, output_paths. */
  Command min = V2(COMMAND__INIT);
  char *min_args[] = {"rustc", "-vV"};
  char *min_out[] = {"out"};
  min.n_arguments = 2;
  min.arguments = min_args;
  min.n_environment_variables = 1;
  min.environment_variables = &env[2];
  min.n_output_paths = 1;
  min.output_paths = min_out;
  emit("command_min", &min.base);
  digest_msg(&min.base, &d_cmd_min, h_cmd_min);
}

static void build_actions(void) {
  static const uint8_t salt[] = {0x00, 0xff, 0x10, 0x80, 0x7f};
  Duration timeout = GOOGLE__PROTOBUF__DURATION__INIT;
  PlatformProp p1 = V2(PLATFORM__PROPERTY__INIT);
  PlatformProp *props[] = {&p1};
  Platform plat = V2(PLATFORM__INIT);
  Action full = V2(ACTION__INIT);

  timeout.seconds = 600;
  timeout.nanos = 5;
  p1.name = "pool";
  p1.value = "rust";
  plat.n_properties = 1;
  plat.properties = props;
  full.command_digest = &d_cmd_full;
  full.input_root_digest = &d_root;
  full.timeout = &timeout;
  full.do_not_cache = 1;
  full.salt = bin(salt, sizeof(salt));
  full.platform = &plat;
  emit("action_full", &full.base);
  digest_msg(&full.base, &d_action, h_action);

  /* The empty input root has size 0: only the hash is encoded. */
  Action min = V2(ACTION__INIT);
  min.command_digest = &d_cmd_min;
  min.input_root_digest = &d_empty;
  emit("action_min", &min.base);

  /* Present-but-default submessages are encoded as empty (tag, len 0). */
  Duration zero = GOOGLE__PROTOBUF__DURATION__INIT;
  Platform empty_plat = V2(PLATFORM__INIT);
  Action presence = V2(ACTION__INIT);
  presence.command_digest = &d_cmd_min;
  presence.input_root_digest = &d_empty;
  presence.timeout = &zero;
  presence.platform = &empty_plat;
  emit("action_presence", &presence.base);
}

/* ActionResult declares its fields in the order 2,10,12,3,11,4..9; every
 * one is set here so the encoding shows the number order. */
static void fill_action_result(ActionResult *r, ExecutedActionMetadata *md,
                               Any *aux) {
  static char h_out[65], h_stdout[65], h_stderr[65], h_tree[65], h_rootd[65];
  static Digest dg_out = V2(DIGEST__INIT), dg_stdout = V2(DIGEST__INIT);
  static Digest dg_stderr = V2(DIGEST__INIT), dg_tree = V2(DIGEST__INIT);
  static Digest dg_rootd = V2(DIGEST__INIT);
  static OutputFile of1 = V2(OUTPUT_FILE__INIT), of2 = V2(OUTPUT_FILE__INIT);
  static OutputFile *ofs[2];
  static NodeProperty onp = V2(NODE_PROPERTY__INIT);
  static NodeProperty *onps[1];
  static NodeProperties oprops = V2(NODE_PROPERTIES__INIT);
  static OutputSymlink fsl = V2(OUTPUT_SYMLINK__INIT);
  static OutputSymlink dsl = V2(OUTPUT_SYMLINK__INIT);
  static OutputSymlink sl1 = V2(OUTPUT_SYMLINK__INIT);
  static OutputSymlink sl2 = V2(OUTPUT_SYMLINK__INIT);
  static OutputSymlink *fsls[1], *dsls[1], *sls[2];
  static OutputDirectory od = V2(OUTPUT_DIRECTORY__INIT);
  static OutputDirectory *ods[1];
  static Timestamp ts[9];
  static Duration ved = GOOGLE__PROTOBUF__DURATION__INIT;
  static Any *auxs[1];

  digest_blob("ELF...", &dg_out, h_out);
  digest_blob("compiling demo\n", &dg_stdout, h_stdout);
  digest_blob("warning: unused\n", &dg_stderr, h_stderr);
  digest_blob("tree", &dg_tree, h_tree);
  digest_blob("rootdir", &dg_rootd, h_rootd);

  of1.path = "target/debug/demo";
  of1.digest = &dg_out;
  of1.is_executable = 1;
  of1.contents = bin("ELF...", 6);
  onp.name = "unix_mode";
  onp.value = "0755";
  onps[0] = &onp;
  oprops.n_properties = 1;
  oprops.properties = onps;
  of1.node_properties = &oprops;
  of2.path = "target/debug/demo.d";
  of2.digest = &dg_stdout;
  ofs[0] = &of1;
  ofs[1] = &of2;
  fsl.path = "target/debug/link";
  fsl.target = "demo";
  dsl.path = "target/debug/dlink";
  dsl.target = "deps";
  sl1.path = "target/debug/dlink";
  sl1.target = "deps";
  sl2.path = "target/debug/link";
  sl2.target = "demo";
  sl2.node_properties = &oprops;
  fsls[0] = &fsl;
  dsls[0] = &dsl;
  sls[0] = &sl1;
  sls[1] = &sl2;
  od.path = "target/debug/deps";
  od.tree_digest = &dg_tree;
  od.is_topologically_sorted = 1;
  od.root_directory_digest = &dg_rootd;
  ods[0] = &od;

  r->n_output_files = 2;
  r->output_files = ofs;
  r->n_output_file_symlinks = 1;
  r->output_file_symlinks = fsls;
  r->n_output_symlinks = 2;
  r->output_symlinks = sls;
  r->n_output_directories = 1;
  r->output_directories = ods;
  r->n_output_directory_symlinks = 1;
  r->output_directory_symlinks = dsls;
  r->exit_code = -1; /* negative int32: a 10-byte varint on the wire */
  r->stdout_raw = bin("compiling demo\n", 15);
  r->stdout_digest = &dg_stdout;
  r->stderr_raw = bin("warning: unused\n", 16);
  r->stderr_digest = &dg_stderr;

  for (int i = 0; i < 9; i++) {
    Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    t.seconds = 1700000000 + i;
    t.nanos = i * 1000;
    ts[i] = t;
  }
  md->worker = "worker-1";
  md->queued_timestamp = &ts[0];
  md->worker_start_timestamp = &ts[1];
  md->worker_completed_timestamp = &ts[2];
  md->input_fetch_start_timestamp = &ts[3];
  md->input_fetch_completed_timestamp = &ts[4];
  md->execution_start_timestamp = &ts[5];
  md->execution_completed_timestamp = &ts[6];
  md->output_upload_start_timestamp = &ts[7];
  md->output_upload_completed_timestamp = &ts[8];
  ved.seconds = 3;
  ved.nanos = 250000000;
  md->virtual_execution_duration = &ved;
  auxs[0] = aux;
  md->n_auxiliary_metadata = 1;
  md->auxiliary_metadata = auxs;
  r->execution_metadata = md;
}

static void build_results(void) {
  ActionResult full = V2(ACTION_RESULT__INIT);
  ExecutedActionMetadata md = V2(EXECUTED_ACTION_METADATA__INIT);
  ToolDetails td = V2(TOOL_DETAILS__INIT);
  Any aux = GOOGLE__PROTOBUF__ANY__INIT;

  td.tool_name = "cargo-distbuild";
  td.tool_version = "0.1.0";
  any_pack(&aux, &td.base);
  fill_action_result(&full, &md, &aux);
  emit("action_result_full", &full.base);

  /* What the spec advises as the smallest sane result: worker set. */
  ActionResult min = V2(ACTION_RESULT__INIT);
  ExecutedActionMetadata mdmin = V2(EXECUTED_ACTION_METADATA__INIT);
  mdmin.worker = "w";
  min.execution_metadata = &mdmin;
  emit("action_result_min", &min.base);

  /* Execution: request, response (map + rich status), operations. */
  ExecutionPolicy ep = V2(EXECUTION_POLICY__INIT);
  ResultsCachePolicy rcp = V2(RESULTS_CACHE_POLICY__INIT);
  char *inline_files[] = {"a", "b/c"};
  ExecuteRequest er = V2(EXECUTE_REQUEST__INIT);
  ep.priority = -5;
  rcp.priority = 7;
  er.instance_name = "main";
  er.skip_cache_lookup = 1;
  er.action_digest = &d_action;
  er.execution_policy = &ep;
  er.results_cache_policy = &rcp;
  er.digest_function = V2(DIGEST_FUNCTION__VALUE__SHA256);
  er.inline_stdout = 1;
  er.inline_stderr = 1;
  er.n_inline_output_files = 2;
  er.inline_output_files = inline_files;
  emit("execute_request", &er.base);

  Google__Rpc__PreconditionFailure__Violation v1 =
      GOOGLE__RPC__PRECONDITION_FAILURE__VIOLATION__INIT;
  Google__Rpc__PreconditionFailure__Violation v2 =
      GOOGLE__RPC__PRECONDITION_FAILURE__VIOLATION__INIT;
  Google__Rpc__PreconditionFailure__Violation *vs[] = {&v1, &v2};
  Google__Rpc__PreconditionFailure pf = GOOGLE__RPC__PRECONDITION_FAILURE__INIT;
  char subj1[REAPI_DIGEST_STR_MAX + 8], subj2[REAPI_DIGEST_STR_MAX + 8];
  snprintf(subj1, sizeof(subj1), "blobs/%s/%lld", d_root.hash,
           (long long)d_root.size_bytes);
  snprintf(subj2, sizeof(subj2), "blobs/%s/%lld", d_src.hash,
           (long long)d_src.size_bytes);
  v1.type = "MISSING";
  v1.subject = subj1;
  v2.type = "MISSING";
  v2.subject = subj2;
  v2.description = "input blob not in CAS";
  pf.n_violations = 2;
  pf.violations = vs;
  emit("precondition_failure", &pf.base);

  Any pf_any = GOOGLE__PROTOBUF__ANY__INIT;
  Any *details[1] = {&pf_any};
  Status st = GOOGLE__RPC__STATUS__INIT;
  any_pack(&pf_any, &pf.base);
  st.code = 9;
  st.message = "missing inputs";
  st.n_details = 1;
  st.details = details;
  emit("status_precondition", &st.base);

  /* Map entries in key order, as deterministic encoders emit them. */
  char h_log[65];
  Digest dg_log = V2(DIGEST__INIT);
  LogFile lf1 = V2(LOG_FILE__INIT), lf2 = V2(LOG_FILE__INIT);
  ServerLogsEntry le1 = V2(EXECUTE_RESPONSE__SERVER_LOGS_ENTRY__INIT);
  ServerLogsEntry le2 = V2(EXECUTE_RESPONSE__SERVER_LOGS_ENTRY__INIT);
  ServerLogsEntry *logs[] = {&le1, &le2};
  ExecuteResponse resp = V2(EXECUTE_RESPONSE__INIT);
  digest_blob("log text", &dg_log, h_log);
  lf1.digest = &dg_log;
  lf1.human_readable = 1;
  lf2.digest = &dg_log;
  le1.key = "sandbox.log";
  le1.value = &lf1;
  le2.key = "worker.log";
  le2.value = &lf2;
  resp.result = &full;
  resp.cached_result = 1;
  resp.status = &st;
  resp.n_server_logs = 2;
  resp.server_logs = logs;
  resp.message = "done";
  emit("execute_response", &resp.base);

  ExecuteOperationMetadata eom = V2(EXECUTE_OPERATION_METADATA__INIT);
  eom.stage = V2(EXECUTION_STAGE__VALUE__COMPLETED);
  eom.action_digest = &d_action;
  eom.stdout_stream_name = "logs/stdout";
  eom.partial_execution_metadata = &mdmin;
  eom.digest_function = V2(DIGEST_FUNCTION__VALUE__SHA256);
  emit("execute_operation_metadata", &eom.base);

  Any meta_any = GOOGLE__PROTOBUF__ANY__INIT,
      resp_any = GOOGLE__PROTOBUF__ANY__INIT;
  Google__Longrunning__Operation op = GOOGLE__LONGRUNNING__OPERATION__INIT;
  any_pack(&meta_any, &eom.base);
  any_pack(&resp_any, &resp.base);
  op.name = "operations/7d7f0c6e-0000-4000-8000-000000000001";
  op.metadata = &meta_any;
  op.done = 1;
  op.result_case = GOOGLE__LONGRUNNING__OPERATION__RESULT_RESPONSE;
  op.response = &resp_any;
  emit("operation_response", &op.base);

  Google__Longrunning__Operation op_err = GOOGLE__LONGRUNNING__OPERATION__INIT;
  op_err.name = "operations/x";
  op_err.done = 1;
  op_err.result_case = GOOGLE__LONGRUNNING__OPERATION__RESULT_ERROR;
  op_err.error = &st;
  emit("operation_error", &op_err.base);

  Google__Longrunning__Operation op_run = GOOGLE__LONGRUNNING__OPERATION__INIT;
  op_run.name = "operations/y";
  op_run.metadata = &meta_any;
  emit("operation_running", &op_run.base);

  any_clear(&resp_any);
  any_clear(&meta_any);
  any_clear(&pf_any);
  any_clear(&aux);
}

static void build_cas_and_misc(void) {
  /* Capabilities: proto3 packs repeated enums; check both sides agree. */
  DigestFn dfs[] = {V2(DIGEST_FUNCTION__VALUE__SHA256),
                    V2(DIGEST_FUNCTION__VALUE__BLAKE3)};
  CompressorV comps[] = {V2(COMPRESSOR__VALUE__ZSTD),
                         V2(COMPRESSOR__VALUE__DEFLATE)};
  CompressorV bcomps[] = {V2(COMPRESSOR__VALUE__ZSTD)};
  ActionCacheUpdateCapabilities acu =
      V2(ACTION_CACHE_UPDATE_CAPABILITIES__INIT);
  PriorityRange pr = V2(PRIORITY_CAPABILITIES__PRIORITY_RANGE__INIT);
  PriorityRange *prs[] = {&pr};
  PriorityCapabilities pc = V2(PRIORITY_CAPABILITIES__INIT);
  CacheCapabilities cc = V2(CACHE_CAPABILITIES__INIT);
  ExecutionCapabilities ec = V2(EXECUTION_CAPABILITIES__INIT);
  char *snp[] = {"OSFamily", "pool"};
  DigestFn edfs[] = {V2(DIGEST_FUNCTION__VALUE__SHA256)};
  SemVer low = BUILD__BAZEL__SEMVER__SEM_VER__INIT;
  SemVer high = BUILD__BAZEL__SEMVER__SEM_VER__INIT;
  ServerCapabilities sc = V2(SERVER_CAPABILITIES__INIT);

  acu.update_enabled = 1;
  pr.min_priority = -10;
  pr.max_priority = 10;
  pc.n_priorities = 1;
  pc.priorities = prs;
  cc.n_digest_functions = 2;
  cc.digest_functions = dfs;
  cc.action_cache_update_capabilities = &acu;
  cc.cache_priority_capabilities = &pc;
  cc.max_batch_total_size_bytes = 4 * 1024 * 1024;
  cc.symlink_absolute_path_strategy =
      V2(SYMLINK_ABSOLUTE_PATH_STRATEGY__VALUE__ALLOWED);
  cc.n_supported_compressors = 2;
  cc.supported_compressors = comps;
  cc.n_supported_batch_update_compressors = 1;
  cc.supported_batch_update_compressors = bcomps;
  ec.digest_function = V2(DIGEST_FUNCTION__VALUE__SHA256);
  ec.exec_enabled = 1;
  ec.execution_priority_capabilities = &pc;
  ec.n_supported_node_properties = 2;
  ec.supported_node_properties = snp;
  ec.n_digest_functions = 1;
  ec.digest_functions = edfs;
  low.major = 2;
  high.major = 2;
  high.minor = 3;
  sc.cache_capabilities = &cc;
  sc.execution_capabilities = &ec;
  sc.low_api_version = &low;
  sc.high_api_version = &high;
  emit("server_capabilities", &sc.base);

  /* BatchReadBlobsResponse.Response declares 1,2,4,3. */
  Status ok = GOOGLE__RPC__STATUS__INIT;
  Status nf = GOOGLE__RPC__STATUS__INIT;
  BatchReadBlobsResponse_Response r1 =
      V2(BATCH_READ_BLOBS_RESPONSE__RESPONSE__INIT);
  BatchReadBlobsResponse_Response r2 =
      V2(BATCH_READ_BLOBS_RESPONSE__RESPONSE__INIT);
  BatchReadBlobsResponse_Response *rs[] = {&r1, &r2};
  BatchReadBlobsResponse brr = V2(BATCH_READ_BLOBS_RESPONSE__INIT);
  nf.code = 5;
  nf.message = "not found";
  r1.digest = &d_src;
  r1.data = bin("\x28\xb5\x2f\xfd", 4);
  r1.compressor = V2(COMPRESSOR__VALUE__ZSTD);
  r1.status = &ok;
  r2.digest = &d_root;
  r2.status = &nf;
  brr.n_responses = 2;
  brr.responses = rs;
  emit("batch_read_blobs_response", &brr.base);

  BatchUpdateBlobsRequest_Request q1 =
      V2(BATCH_UPDATE_BLOBS_REQUEST__REQUEST__INIT);
  BatchUpdateBlobsRequest_Request *qs[] = {&q1};
  BatchUpdateBlobsRequest bur = V2(BATCH_UPDATE_BLOBS_REQUEST__INIT);
  q1.digest = &d_src;
  q1.data = bin("abc\0def", 7);
  q1.compressor = V2(COMPRESSOR__VALUE__IDENTITY);
  bur.n_requests = 1;
  bur.requests = qs;
  bur.digest_function = V2(DIGEST_FUNCTION__VALUE__SHA256);
  emit("batch_update_blobs_request", &bur.base);

  Digest *missing[] = {&d_src, &d_empty};
  FindMissingBlobsResponse fmr = V2(FIND_MISSING_BLOBS_RESPONSE__INIT);
  fmr.n_missing_blob_digests = 2;
  fmr.missing_blob_digests = missing;
  emit("find_missing_blobs_response", &fmr.base);

  /* ByteStream data is field 10. */
  Google__Bytestream__WriteRequest wr = GOOGLE__BYTESTREAM__WRITE_REQUEST__INIT;
  wr.resource_name = "uploads/6f1c5e1a-7f4b-4d4e-9a51-3c1d2b0a9e8f/blobs/"
                     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b"
                     "7852b855/0";
  wr.write_offset = 1048576;
  wr.finish_write = 1;
  wr.data = bin("chunk", 5);
  emit("bytestream_write_request", &wr.base);

  Google__Rpc__RetryInfo ri = GOOGLE__RPC__RETRY_INFO__INIT;
  Duration delay = GOOGLE__PROTOBUF__DURATION__INIT;
  delay.nanos = 500000000;
  ri.retry_delay = &delay;
  emit("retry_info", &ri.base);

  ToolDetails td = V2(TOOL_DETAILS__INIT);
  RequestMetadata rm = V2(REQUEST_METADATA__INIT);
  td.tool_name = "cargo-distbuild";
  td.tool_version = "0.1.0";
  rm.tool_details = &td;
  rm.action_id = "a1";
  rm.tool_invocation_id = "inv";
  rm.correlated_invocations_id = "corr";
  rm.action_mnemonic = "RustCompile";
  rm.target_id = "demo";
  rm.configuration_id = "dev";
  emit("request_metadata", &rm.base);
}

/* ---------------------------------------------------------- reserialize */

static const ProtobufCMessageDescriptor *const known[] = {
    &build__bazel__remote__execution__v2__action__descriptor,
    &build__bazel__remote__execution__v2__action_result__descriptor,
    &build__bazel__remote__execution__v2__batch_read_blobs_response__descriptor,
    &build__bazel__remote__execution__v2__batch_update_blobs_request__descriptor,
    &build__bazel__remote__execution__v2__command__descriptor,
    &build__bazel__remote__execution__v2__directory__descriptor,
    &build__bazel__remote__execution__v2__execute_operation_metadata__descriptor,
    &build__bazel__remote__execution__v2__execute_request__descriptor,
    &build__bazel__remote__execution__v2__execute_response__descriptor,
    &build__bazel__remote__execution__v2__find_missing_blobs_response__descriptor,
    &build__bazel__remote__execution__v2__request_metadata__descriptor,
    &build__bazel__remote__execution__v2__server_capabilities__descriptor,
    &build__bazel__remote__execution__v2__tree__descriptor,
    &google__bytestream__write_request__descriptor,
    &google__longrunning__operation__descriptor,
    &google__rpc__precondition_failure__descriptor,
    &google__rpc__retry_info__descriptor,
    &google__rpc__status__descriptor,
};

static const ProtobufCMessageDescriptor *find_desc(const char *name) {
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (strcmp(known[i]->name, name) == 0)
      return known[i];
  return NULL;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* One "LABEL TYPE HEX" line: decode, unpack, repack, print. */
static int reserialize_line(char *line) {
  char *save = NULL;
  char *label = strtok_r(line, " \n", &save);
  char *type = strtok_r(NULL, " \n", &save);
  char *hex = strtok_r(NULL, " \n", &save);
  const ProtobufCMessageDescriptor *desc;
  ProtobufCMessage *m;
  uint8_t *in, *out;
  size_t n, outn;
  int rc = -1;

  if (!label)
    return 0; /* blank line */
  if (!type || !hex || !(desc = find_desc(type))) {
    fprintf(stderr, "bad input line for %s\n", label);
    return -1;
  }
  if (strcmp(hex, "-") == 0)
    hex = "";
  n = strlen(hex) / 2;
  in = malloc(n ? n : 1);
  if (!in)
    return -1;
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      fprintf(stderr, "%s: bad hex\n", label);
      goto out_in;
    }
    in[i] = (uint8_t)(hi << 4 | lo);
  }
  m = protobuf_c_message_unpack(desc, NULL, n, in);
  if (!m) {
    fprintf(stderr, "%s: protobuf-c cannot parse the bytes\n", label);
    goto out_in;
  }
  out = pack_alloc(m, &outn);
  if (out) {
    print_line(label, type, out, outn);
    rc = 0;
  }
  free(out);
  protobuf_c_message_free_unpacked(m, NULL);
out_in:
  free(in);
  return rc;
}

static int reserialize(void) {
  char *line = NULL;
  size_t cap = 0;
  int rc = 0;
  while (getline(&line, &cap, stdin) > 0)
    if (reserialize_line(line) != 0)
      rc = 1;
  free(line);
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "emit") == 0) {
    build_directories();
    build_commands();
    build_actions();
    build_results();
    build_cas_and_misc();
    return failed ? 1 : 0;
  }
  if (argc == 2 && strcmp(argv[1], "reserialize") == 0)
    return reserialize();
  fprintf(stderr, "usage: %s emit|reserialize\n", argv[0]);
  return 2;
}
