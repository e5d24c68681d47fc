#include "common/json.h"

#include "absl/strings/str_format.h"
#include "common/utf8.h"

namespace fedge {

void AppendJsonString(absl::string_view s, std::string* out,
                      bool ascii_only) {
  out->push_back('"');
  while (!s.empty()) {
    const unsigned char c = s[0];
    size_t length = 1;
    if (c >= 0x80) {
      if (ascii_only) {
        absl::StrAppendFormat(out, "\\u%04x", c);
        s.remove_prefix(1);
        continue;
      }
      length = Utf8SequenceLength(s);
      if (length == 0) {
        out->append("\xef\xbf\xbd");  // U+FFFD for an invalid byte.
        s.remove_prefix(1);
        continue;
      }
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->append(s.data(), length);
        }
    }
    s.remove_prefix(length);
  }
  out->push_back('"');
}

}  // namespace fedge
