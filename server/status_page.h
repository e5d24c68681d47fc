// The coordinator's live status page: one self-contained HTML file
// (server/status_page.html, embedded at build time) that polls
// /api/status, the JSON of a FederationSnapshot, every second.
//
//   AddStatusPageRoutes([&] { return coordinator.Snapshot(); },
//                       &http_options.routes);
//
// Stateless; thread-safe.
#ifndef FEDGE_SERVER_STATUS_PAGE_H_
#define FEDGE_SERVER_STATUS_PAGE_H_

#include <functional>
#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "server/http_server.h"
#include "server/status_snapshot.h"

namespace fedge {

// The page's HTML, byte for byte as in server/status_page.html.
const std::string& StatusPageHtml();

inline constexpr absl::string_view kStatusPageContentType =
    "text/html; charset=utf-8";

// Adds to `routes`: GET "/" (the page) and GET "/api/status" (the JSON of
// `snapshot()`, called once per request on the HTTP server's threads, so
// it must be thread-safe).
void AddStatusPageRoutes(std::function<FederationSnapshot()> snapshot,
                         std::map<std::string, HttpHandler>* routes);

}  // namespace fedge

#endif  // FEDGE_SERVER_STATUS_PAGE_H_
