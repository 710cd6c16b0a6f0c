// The admin server's "/": one self-contained HTML page (inline script and style, nothing fetched from
// elsewhere) that polls /metrics, /config and /ready once a second and draws live graphs.
#pragma once

#include <string_view>

namespace skproxy {

std::string_view StatusPageHtml();

}  // namespace skproxy
