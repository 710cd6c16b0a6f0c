// Byte sizes the tests speak in.
#pragma once

#include <cstdint>

namespace skproxy::itest {

constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = 1024 * KiB;
constexpr uint64_t GiB = 1024 * MiB;

}  // namespace skproxy::itest
