// Configuration loading: a textproto file, then command-line overrides of any
// field by its path, for every binary (fedge-sim, fedge-coordinator, ...).
//
//   fedge-sim --config configs/sim/mnist_2nn_iid.textproto
//       --rounds 50 --train.learning_rate=0.05 --data_dir ../shared/data/mnist
//
// A flag is either one of the binary's own (e.g. --config, --help) or a field
// path of the config message (nested with dots); aliases map short names such
// as --data_dir to a path (data.data_dir). Errors name the flag or field and
// say how to fix it. Stateless functions; thread-compatible.
#ifndef FEDGE_COMMON_CONFIG_LOADER_H_
#define FEDGE_COMMON_CONFIG_LOADER_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace fedge {

// Parses the textproto file at `path` into `message` (merged over defaults).
// NOT_FOUND when the file cannot be read; INVALID_ARGUMENT naming it when
// it is a directory, or with file, line and column when it does not parse.
absl::Status LoadTextProtoFile(const std::string& path,
                               google::protobuf::Message* message);

// Sets the field at `field_path` (e.g. "train.batch_size") of `message` to
// `value` in text-format syntax (strings unquoted; repeated fields as
// "1,2,3", replacing the old list). INVALID_ARGUMENT naming the field when
// the path does not exist (listing the valid names at that level) or the
// value does not parse as the field's type.
absl::Status SetFieldByPath(absl::string_view field_path,
                            absl::string_view value,
                            google::protobuf::Message* message);

// A parsed command line.
struct CommandLine {
  std::string config_path;  // --config FILE
  bool help = false;        // --help / -h
  // Known flags of the binary (not config fields) with their values.
  absl::flat_hash_map<std::string, std::string> flags;
  // Config overrides, in command-line order: (field path, value).
  std::vector<std::pair<std::string, std::string>> overrides;
  // Arguments that are not flags (e.g. a subcommand).
  std::vector<std::string> positional;
};

struct CommandLineSpec {
  // Flags that belong to the binary rather than to the config (without the
  // leading dashes); each takes a value.
  std::vector<std::string> own_flags;
  // Flag name -> config field path, e.g. {"data_dir", "data.data_dir"}.
  absl::flat_hash_map<std::string, std::string> aliases;
  // The config message (e.g. AgentConfig::descriptor()). With it a flag
  // that is neither the binary's own nor an alias must name a config field,
  // and a bool field's flag may stand alone: "--tls.insecure" means
  // --tls.insecure=true unless the next argument is a bool ("true", "false",
  // "1", "0", ...). Null: every flag takes a value, unknown names are left
  // to BuildConfig.
  const google::protobuf::Descriptor* config = nullptr;
};

// Splits argv (without argv[0]) into the parts above. Accepts "--name=value"
// and "--name value" (a bool config field also "--name", see above).
// INVALID_ARGUMENT naming the flag when it needs a value and has none, or
// (with spec.config) when it names no config field, listing the valid
// names.
absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv,
                                             const CommandLineSpec& spec);

// Loads `cmd.config_path` (if set) into `message`, then applies the
// overrides. Errors say which flag or file they come from.
absl::Status BuildConfig(const CommandLine& cmd,
                         google::protobuf::Message* message);

// One line per scalar field of `descriptor` (recursively):
// "  --train.batch_size=<int32> (default 10)". For --help.
std::string DescribeFlags(const google::protobuf::Descriptor* descriptor);

// The message in text format (for logging the effective configuration).
std::string ToTextProto(const google::protobuf::Message& message);

// `s` as INVALID_ARGUMENT with the same message (OK stays OK): for an error
// met while a program starts from its configuration, e.g. a file the
// configuration names that cannot be read (NOT_FOUND where it was read).
// The programs exit 2 for INVALID_ARGUMENT ("bad usage or configuration").
absl::Status AsConfigError(const absl::Status& s);

}  // namespace fedge

#endif  // FEDGE_COMMON_CONFIG_LOADER_H_
