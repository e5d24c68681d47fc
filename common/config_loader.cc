#include "common/config_loader.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace fedge {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// Collects the parser's first error as text.
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!error_.empty()) return;
    error_ =
        absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

std::string FieldNames(const Descriptor* d) {
  std::vector<std::string> names;
  for (int i = 0; i < d->field_count(); ++i)
    names.push_back(d->field(i)->name());
  return absl::StrJoin(names, ", ");
}

// Text-format for one value of `field`: strings are quoted.
std::string QuoteValue(const FieldDescriptor* field, absl::string_view v) {
  if (field->type() == FieldDescriptor::TYPE_STRING ||
      field->type() == FieldDescriptor::TYPE_BYTES) {
    std::string out = "\"";
    for (char c : v) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    return out + "\"";
  }
  return std::string(v);
}

// The fields along `field_path` (e.g. "train.batch_size") from `d`: each
// but the last a singular message. INVALID_ARGUMENT naming the path and the
// valid names at the level that does not match.
absl::StatusOr<std::vector<const FieldDescriptor*>> ResolvePath(
    const Descriptor* d, absl::string_view field_path) {
  std::vector<const FieldDescriptor*> fields;
  for (absl::string_view part : absl::StrSplit(field_path, '.')) {
    if (!fields.empty()) {
      const FieldDescriptor* parent = fields.back();
      if (parent->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE ||
          parent->is_repeated()) {
        return absl::InvalidArgumentError(
            absl::StrCat("config field '", field_path, "': '", parent->name(),
                         "' is not a message, so it has no sub-fields"));
      }
      d = parent->message_type();
    }
    const FieldDescriptor* field = d->FindFieldByName(std::string(part));
    if (field == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown config field '", field_path, "': '", part,
                       "' is not one of ", d->full_name(), "'s fields (",
                       FieldNames(d), ")"));
    }
    fields.push_back(field);
  }
  return fields;
}

// Whether text format reads `arg` as a bool.
bool IsBoolText(absl::string_view arg) {
  for (const char* b : {"true", "false", "True", "False", "t", "f", "1", "0"}) {
    if (arg == b) return true;
  }
  return false;
}

// The value of flag --`name`, written without "=VALUE", at argv[*i]: the
// next argument (consumed). For a singular bool config `field`, "true"
// unless the next argument is a bool ("--tls.insecure --rounds 2",
// "--tls.insecure status" and "--tls.insecure false" all work).
// INVALID_ARGUMENT when a value is needed and there is none.
absl::StatusOr<std::string> SeparateValue(absl::string_view name,
                                          const FieldDescriptor* field,
                                          int argc, const char* const* argv,
                                          int* i) {
  const bool has_next = *i + 1 < argc;
  if (field != nullptr && field->cpp_type() == FieldDescriptor::CPPTYPE_BOOL &&
      !field->is_repeated()) {
    if (has_next && IsBoolText(argv[*i + 1])) return std::string(argv[++*i]);
    return std::string("true");
  }
  if (has_next) return std::string(argv[++*i]);
  return absl::InvalidArgumentError(
      absl::StrCat("flag --", name, " needs a value (--", name, "=VALUE)"));
}

// The text format of message `field` set to `value`: `{...}` or, for a
// repeated field, `{...} {...}`, each group one element. INVALID_ARGUMENT
// naming `field_path` when `value` is not in braces or holds several
// groups for a singular field.
absl::StatusOr<std::string> MessageValueText(const FieldDescriptor* field,
                                             absl::string_view field_path,
                                             absl::string_view value) {
  if (!absl::StartsWith(absl::StripLeadingAsciiWhitespace(value), "{")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config field '", field_path, "' is a message; set one of its fields (",
        FieldNames(field->message_type()),
        "), or give it whole in text format, e.g. --", field_path, "='{",
        field->message_type()->field(0)->name(), ": ...}'",
        field->is_repeated() ? " (repeat {...} for more)" : ""));
  }
  std::string text;
  int depth = 0, groups = 0;
  bool quoted = false;
  char quote = 0;
  for (char c : value) {
    if (quoted) {
      if (c == quote) quoted = false;
    } else if (c == '"' || c == '\'') {
      quoted = true;
      quote = c;
    } else if (c == '{') {
      if (depth++ == 0) {
        absl::StrAppend(&text, field->name(), " ");
        ++groups;
      }
    } else if (c == '}') {
      --depth;
    }
    text.push_back(c);
    if (!quoted && c == '}' && depth == 0) text.push_back('\n');
  }
  if (groups > 1 && !field->is_repeated()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad value '", value, "' for config field '", field_path,
                     "': expected a single {...}"));
  }
  return text;
}

absl::Status ParseInto(const std::string& text, Message* message,
                       absl::string_view what) {
  google::protobuf::TextFormat::Parser parser;
  ErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.MergeFromString(text, message)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", errors.error()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LoadTextProtoFile(const std::string& path, Message* message) {
  // An ifstream opens a directory and reads nothing from it: an empty
  // config.
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config file '", path, "' is a directory; give a .textproto file"));
  }
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read config file '", path, "'"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseInto(text.str(), message, path);
}

absl::Status SetFieldByPath(absl::string_view field_path,
                            absl::string_view value, Message* message) {
  ASSIGN_OR_RETURN(std::vector<const FieldDescriptor*> path,
                   ResolvePath(message->GetDescriptor(), field_path));
  Message* target = message;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    target = target->GetReflection()->MutableMessage(target, path[i]);
  }
  const FieldDescriptor* field = path.back();
  std::string text;
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    ASSIGN_OR_RETURN(text, MessageValueText(field, field_path, value));
  } else if (field->is_repeated()) {
    for (absl::string_view item :
         absl::StrSplit(value, ',', absl::SkipEmpty())) {
      absl::StrAppend(&text, field->name(), ": ", QuoteValue(field, item),
                      "\n");
    }
  } else {
    text = absl::StrCat(field->name(), ": ", QuoteValue(field, value));
  }
  // Parse into a scratch message so that a bad value changes nothing and
  // text after the value cannot set other fields.
  std::unique_ptr<Message> scratch(target->New());
  RETURN_IF_ERROR(
      ParseInto(text, scratch.get(),
                absl::StrCat("bad value '", value, "' for config field '",
                             field_path, "'")));
  std::vector<const FieldDescriptor*> set;
  scratch->GetReflection()->ListFields(*scratch, &set);
  if (set.size() > 1 || (set.size() == 1 && set[0] != field)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad value '", value, "' for config field '", field_path,
                     "': expected a single value"));
  }
  target->GetReflection()->ClearField(target, field);
  target->MergeFrom(*scratch);
  return absl::OkStatus();
}

absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv,
                                             const CommandLineSpec& spec) {
  CommandLine cmd;
  for (int i = 0; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h" || arg == "--helpfull") {
      cmd.help = true;
      continue;
    }
    if (!absl::ConsumePrefix(&arg, "--")) {
      cmd.positional.emplace_back(arg);
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string name(arg.substr(0, eq));
    std::optional<std::string> value;
    if (eq != absl::string_view::npos) value = std::string(arg.substr(eq + 1));
    const bool own = name == "config" ||
                     std::find(spec.own_flags.begin(), spec.own_flags.end(),
                               name) != spec.own_flags.end();
    if (own) {
      if (!value) {
        ASSIGN_OR_RETURN(value, SeparateValue(name, nullptr, argc, argv, &i));
      }
      if (name == "config") {
        cmd.config_path = *value;
      } else {
        cmd.flags[name] = *value;
      }
      continue;
    }
    const auto alias = spec.aliases.find(name);
    const std::string path = alias != spec.aliases.end() ? alias->second : name;
    const FieldDescriptor* field = nullptr;
    if (spec.config != nullptr) {
      absl::StatusOr<std::vector<const FieldDescriptor*>> fields =
          ResolvePath(spec.config, path);
      if (!fields.ok()) return Annotate(fields.status(), "flag --" + name);
      field = fields->back();
    }
    if (!value) {
      ASSIGN_OR_RETURN(value, SeparateValue(name, field, argc, argv, &i));
    }
    cmd.overrides.emplace_back(path, *value);
  }
  return cmd;
}

absl::Status BuildConfig(const CommandLine& cmd, Message* message) {
  if (!cmd.config_path.empty()) {
    RETURN_IF_ERROR(LoadTextProtoFile(cmd.config_path, message));
  }
  for (const auto& [path, value] : cmd.overrides) {
    absl::Status s = SetFieldByPath(path, value, message);
    if (!s.ok()) return Annotate(s, absl::StrCat("flag --", path));
  }
  return absl::OkStatus();
}

namespace {

std::string DefaultText(const FieldDescriptor* f) {
  if (f->is_repeated()) return "";
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return absl::StrCat("\"", f->default_value_string(), "\"");
    case FieldDescriptor::CPPTYPE_BOOL:
      return f->default_value_bool() ? "true" : "false";
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return absl::StrCat(f->default_value_double());
    case FieldDescriptor::CPPTYPE_FLOAT:
      return absl::StrCat(f->default_value_float());
    case FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(f->default_value_int32());
    case FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(f->default_value_int64());
    case FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(f->default_value_uint32());
    case FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(f->default_value_uint64());
    case FieldDescriptor::CPPTYPE_ENUM:
      return f->default_value_enum()->name();
    default:
      return "";
  }
}

void Describe(const Descriptor* d, const std::string& prefix,
              std::string* out) {
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const std::string path = prefix + f->name();
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      Describe(f->message_type(), path + ".", out);
      continue;
    }
    absl::StrAppend(out, "  --", path, "=<", f->type_name(),
                    f->is_repeated() ? ",..." : "", ">");
    std::string def = DefaultText(f);
    if (!def.empty()) absl::StrAppend(out, "  (default ", def, ")");
    absl::StrAppend(out, "\n");
  }
}

}  // namespace

std::string DescribeFlags(const Descriptor* descriptor) {
  std::string out;
  Describe(descriptor, "", &out);
  return out;
}

std::string ToTextProto(const Message& message) {
  std::string out;
  google::protobuf::TextFormat::Printer printer;
  printer.SetSingleLineMode(true);
  printer.PrintToString(message, &out);
  return out;
}

absl::Status AsConfigError(const absl::Status& s) {
  if (s.ok() || absl::IsInvalidArgument(s)) return s;
  return absl::InvalidArgumentError(s.message());
}

}  // namespace fedge
