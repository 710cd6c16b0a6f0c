// The config in force as JSON, for the admin server's /config: the same keys as the YAML file, every
// default filled in, durations in seconds and sizes in bytes.
#pragma once

#include <string>
#include <string_view>

#include "config/config.h"

namespace skproxy {

std::string ConfigToJson(const config::Config& config);
// A JSON string literal, quotes included.
std::string JsonString(std::string_view text);

}  // namespace skproxy
